# Re-encryption after a data key rotation (REQ N-SEC-1, N-SEC-3;
# docs/operations.md 4.3): a key appended to shinsei_data_keys and a
# reload, and worker 0 writes every value under an older key again under
# the new one: names, addresses, mails waiting in the outbox, the new
# address of an e-mail change waiting for its link.  Then the old key can
# go, and everything still works: login, my page, the waiting mail, the
# link.  A value that cannot be decrypted is left alone and reported; a
# value changed meanwhile is not overwritten.
use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Encode qw(decode);
use Time::HiRes qw(sleep time);
use ShinseiTest;
use ShinseiTest::Flows;
use ShinseiTest::Accounts qw(parallel_sign_ups);

binmode(Test::More->builder->$_, ':encoding(UTF-8)')
    for qw(output failure_output todo_output);

# retry=60s: the mail held back below waits for the test, not for backoff;
# shinsei_purge_interval 2s: the job passes again every 2 s (its first
# pass is at the shorter of 10 s and the interval)
my $t = ShinseiTest->new(mail => 1,
                         smtp_opts => 'timeout=3s retry=60s attempts=5',
                         http_extra => 'shinsei_purge_interval 2s;');

my $pw = 'correct horse battery';
my $a = signed_up_resident($t, email => 'kagi.ichiro@example.jp',
                           name => '鍵 一郎', name_kana => 'カギ イチロウ');
my $b = signed_up_resident($t, email => 'kagi.jiro@example.jp',
                           name => '鍵 二郎', name_kana => 'カギ ジロウ');

# B asks to change the address: the new one waits (encrypted) in a token
$b->get('/mypage/email');
my $r = $b->submit_form('/mypage/email', {
    email => 'kagi.jiro.new@example.jp', current_password => $pw });
is($r->{status}, 303, 'a change of address waits for its link');
my $confirm = link_path(mail_for($t, 'kagi.jiro.new@example.jp',
                                 qr/新しいメールアドレスの確認/),
                        qr{/email/confirm\?t=});
ok($confirm, 'the confirmation link is mailed');

# a reset mail for A that cannot go out yet: it stays in the outbox
$t->mail->stop;
my $f = $t->browser;
$f->get('/password/forgot');
$r = $f->submit_form('/password/forgot', { email => 'kagi.ichiro@example.jp' });
is($r->{status}, 303, 'a reset is requested while SMTP is down');
my $until = time + 10;
sleep 0.1 while time < $until
    && $t->psql("SELECT count(*) FROM outbox WHERE key LIKE 'reset:%'"
                . " AND attempts >= 1") == 0;
is($t->psql("SELECT status FROM outbox WHERE key LIKE 'reset:%'"), 'pending',
   'the reset mail waits in the outbox');

# 250 more accounts through the sign-up form, each with its verification
# mail waiting in the outbox (SMTP is down), and 120 more address changes
# of B (copies: the new address is bound to B's row, so a copy of B's
# decrypts; the psql session says shinsei.aad=row, as the module's
# connections do, so sql/013 does not mark them as of the first format):
# every target takes several batches of 100.  One sign-up's name is then
# damaged.
my @more = map { "kagi.more$_\@example.jp" } 1 .. 250;
is(parallel_sign_ups($t, \@more, procs => 8), 250, '250 more residents sign up');
$t->psql(<<'SQL');
SET shinsei.aad = 'row';
INSERT INTO tokens (city, citizen_id, kind, token_hash, data, expires_at)
SELECT k.city, k.citizen_id, k.kind,
       decode(md5('token' || g) || md5('token' || g || 'x'), 'hex'),
       k.data, k.expires_at
FROM tokens k, generate_series(1, 120) g
WHERE k.id = (SELECT min(id) FROM tokens WHERE data ? 'email_enc');
UPDATE citizens
SET name_enc = 'k1:' || encode(decode(repeat('00', 40), 'hex'), 'base64')
WHERE id = (SELECT max(id) FROM citizens);
SQL

# every encrypted value with its key id, as docs/operations.md 4.3 counts
my $by_key = <<'SQL';
SELECT k, count(*) FROM (
    SELECT split_part(email_enc, ':', 1) FROM citizens
    UNION ALL SELECT split_part(name_enc, ':', 1) FROM citizens
    UNION ALL SELECT split_part(name_kana_enc, ':', 1) FROM citizens
    UNION ALL SELECT split_part(recipient_enc, ':', 1) FROM outbox
    UNION ALL SELECT split_part(body_enc, ':', 1) FROM outbox
    UNION ALL SELECT split_part(data->>'email_enc', ':', 1) FROM tokens
        WHERE data ? 'email_enc'
) v(k) GROUP BY k ORDER BY k
SQL
my %before = map { split /\t/ } split /\n/, $t->psql($by_key);
is_deeply([keys %before], ['k1'], 'before the rotation every value is '
                                  . "under k1 ($before{k1})");
cmp_ok($before{k1}, '>', 3 * 252 + 2 * 250 + 120,
       'names, addresses, mails and address changes');
my $saved = $t->psql("SELECT name_enc FROM citizens ORDER BY id LIMIT 1");

# the rotation: a key appended, nginx reloaded
open(my $fh, '>>', "$t->{dir}/data.keys") or die $!;
printf $fh "key k2 %s\n", join '', map { sprintf '%02x', int rand 256 } 1 .. 32;
close $fh;
$t->reload;

my %after;
$until = time + 30;     # the first pass starts 2 s after the reload
while (time < $until) {
    %after = map { split /\t/ } split /\n/, $t->psql($by_key);
    last if ($after{k1} // 0) <= 1;
    sleep 0.2;
}
is($after{k1}, 1, 'after the reload only the damaged value is under k1');
is($after{k2}, $before{k1} - 1, "the other $after{k2} are under k2");

my $log;
$until = time + 10;
while (time < $until) {
    $log = $t->error_log;
    last if $log =~ /re-encryption left values/;
    sleep 0.1;
}
my $n = $before{k1} - 1;
like($log, qr/\[notice\][^\n]*shinsei: re-encrypted $n values under the data key "k2"/,
     'error.log says how many values were re-encrypted, under which key');
like($log, qr/\[error\][^\n]*re-encryption left values it cannot decrypt[^\n]*: 1\n/,
     'and that one could not be decrypted');

is($t->psql("SELECT count(DISTINCT data->>'email_enc') = count(*) FROM tokens"
            . " WHERE data ? 'email_enc'"),
   't', 'each copy was encrypted anew (a fresh nonce each)');

# a value written under k1 after the first pass (as a worker of the
# previous generation may, during the reload) is caught by the next pass
my $aid = $t->psql("SELECT min(id) FROM citizens");
# (RETURNING: a pass may come any moment after the write)
is($t->psql("SET shinsei.aad = 'row';"
            . " UPDATE citizens SET name_enc = '$saved' WHERE id = $aid"
            . " RETURNING split_part(name_enc, ':', 1)"), 'k1',
   'a value is written under k1 again');
$until = time + 15;
sleep 0.2 while time < $until
    && $t->psql("SELECT name_enc LIKE 'k1:%' FROM citizens WHERE id = $aid")
       eq 't';
like($t->psql("SELECT name_enc FROM citizens WHERE id = $aid"), qr/^k2:/,
     'the next pass re-encrypts it');

# a value the resident changed meanwhile is not overwritten
my $name_a = $t->psql("SELECT name_enc FROM citizens WHERE id = $aid");
is($t->psql("SELECT rekey_apply('citizens.name_enc',"
            . " json_build_array(json_build_object('id', $aid,"
            . " 'old', 'k1:stale', 'new', 'k2:stale')))"), 0,
   'rekey_apply replaces nothing whose value is no longer what was read');
is($t->psql("SELECT name_enc FROM citizens WHERE id = $aid"), $name_a,
   '... and the value stays');

# the old key goes: only index and k2 are left
my @lines = grep { !/^key k1 / } split /\n/, $t->slurp("$t->{dir}/data.keys");
open($fh, '>', "$t->{dir}/data.keys") or die $!;
print $fh join("\n", @lines), "\n";
close $fh;
unlike($t->slurp("$t->{dir}/data.keys"), qr/^key k1/m, 'k1 is removed');
$t->stop;
$t->mail->start;
$t->start;

my $again = $t->browser;
is(log_in($t, $again, 'kagi.ichiro@example.jp', $pw)->{status}, 303,
   'without k1, A logs in');
like($again->get('/mypage')->{text}, qr{<dd>鍵 一郎</dd>},
     'and my page shows the name (re-encrypted under k2)');

$t->psql("UPDATE outbox SET next_attempt_at = now() WHERE status = 'pending';"
         . " NOTIFY shinsei_outbox");
my $reset = mail_for($t, 'kagi.ichiro@example.jp', qr/パスワードの再発行/);
ok($reset, 'the reset mail that waited in the outbox goes out');
my $path = $reset && link_path($reset, qr{/password/reset\?t=});
ok($path, '... with its link');
my $rb = $t->browser;
is($rb->follow($rb->get($path))->{status}, 200, '... which opens');

my $anywhere = $t->browser;
$anywhere->get($confirm);
$r = $anywhere->submit_form('/email/confirm', {});
is($r->{status}, 303, 'the change of address waiting in a token confirms');
is(log_in($t, $b, 'kagi.jiro.new@example.jp', $pw)->{status}, 303,
   'the new address logs in');
like($b->get('/mypage')->{text}, qr{<dd>kagi\.jiro\.new\@example\.jp</dd>},
     'and my page shows it');

unlike(decode('UTF-8', $t->error_log), qr/鍵 一郎|kagi\./,
       'N-SEC-3: no name or address in error.log');

$t->done;
done_testing;
