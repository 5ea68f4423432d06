# Finding 10 (ASVS 6.2.1, 6.2.2; REQ N-SEC-1): every encrypted value is
# bound, as AES-GCM's associated data, to its table, column and row, so
# that whoever can write to the database cannot move a ciphertext to
# another row or column and have the module decrypt it there.  Values of
# the first format (bound to the column's name only), marked ".v1" by
# sql/013 or written by any client that is not the module, are still read,
# and the re-encryption job binds them to their row.
use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Encode qw(decode encode);
use MIME::Base64 qw(encode_base64);
use Time::HiRes qw(sleep time);
use ShinseiTest;
use ShinseiTest::Flows;

binmode(Test::More->builder->$_, ':encoding(UTF-8)')
    for qw(output failure_output todo_output);

# shinsei_purge_interval 2s: the re-encryption job passes every 2 s
my $t = ShinseiTest->new(mail => 1, http_extra => 'shinsei_purge_interval 2s;');
my $pw = 'correct horse battery';

signed_up_resident($t, email => 'aad.ichiro@example.jp',
                   name => '結 一郎', name_kana => 'ムスビ イチロウ');
signed_up_resident($t, email => 'aad.jiro@example.jp',
                   name => '結 二郎', name_kana => 'ムスビ ジロウ');
my ($ida, $idb) = split /\n/, $t->psql("SELECT id FROM citizens ORDER BY id");

# my_page(email): the text of my page for a fresh login (no session cache
# in between), or the status of the login or the page if either failed
sub my_page {
    my ($email) = @_;
    my $b = $t->browser;
    my $r = log_in($t, $b, $email, $pw);
    return $r->{status} unless $r->{status} == 303;
    $r = $b->get('/mypage');
    return $r->{status} == 200 ? $r->{text} : $r->{status};
}

sub col { $t->psql("SELECT $_[1] FROM citizens WHERE id = $_[0]") }

like(my_page('aad.ichiro@example.jp'), qr{<dd>結 一郎</dd>},
     'A\'s page shows A\'s name');
my %saved = map { $_ => col($ida, $_) } qw(name_enc name_kana_enc);

# --- a ciphertext moved to another row or column is refused -----------------

# as the module's own connection would write it (shinsei.aad=row: not
# marked as of the first format), and as any other client would
for my $as (['as the module writes', "SET shinsei.aad = 'row'; "],
            ['as another client writes', '']) {
    my ($how, $set) = @{$as};
    my $log0 = length $t->error_log;
    $t->psql("${set}UPDATE citizens SET name_enc ="
             . " (SELECT name_enc FROM citizens WHERE id = $idb)"
             . " WHERE id = $ida");
    my $r = my_page('aad.ichiro@example.jp');
    is($r, 500, "finding 10: B's name moved into A's row ($how) does not "
                . 'decrypt there: the login fails with the error page');
    my $log = substr($t->error_log, $log0);
    like($log, qr/\[error\][^\n]*cannot decrypt a "citizens\.name_enc:$ida" value: wrong or missing data key, or not this row's value/,
         '... and error.log names the column and the row');
    unlike(decode('UTF-8', $log), qr/結 二郎|aad\./,
           '... but no name or address');
    $t->psql("SET shinsei.aad = 'row'; UPDATE citizens SET name_enc ="
             . " '$saved{name_enc}' WHERE id = $ida");
}
like(my_page('aad.jiro@example.jp'), qr{<dd>結 二郎</dd>},
     'B\'s own page is untouched');

$t->psql("SET shinsei.aad = 'row'; UPDATE citizens"
         . " SET name_kana_enc = name_enc WHERE id = $ida");
is(my_page('aad.ichiro@example.jp'), 500,
   'finding 10: A\'s name moved into A\'s own フリガナ column does not decrypt '
   . 'either');
$t->psql("SET shinsei.aad = 'row'; UPDATE citizens"
         . " SET name_kana_enc = '$saved{name_kana_enc}' WHERE id = $ida");
like(my_page("aad.ichiro\@example.jp"), qr{<dd>結 一郎</dd>.*<dd>ムスビ イチロウ</dd>}s,
     'with its own values back, A\'s page shows them');

# two mails waiting in the outbox: their bodies swapped
$t->mail->stop;
for my $who ('aad.ichiro@example.jp', 'aad.jiro@example.jp') {
    my $f = $t->browser;
    $f->get('/password/forgot');
    $f->submit_form('/password/forgot', { email => $who });
}
my $until = time + 10;
sleep 0.1 while time < $until
    && $t->psql("SELECT count(*) FROM outbox WHERE key LIKE 'reset:%'"
                . " AND attempts >= 1") < 2;
my ($m1, $m2) = split /\n/, $t->psql("SELECT id FROM outbox"
                                     . " WHERE key LIKE 'reset:%' ORDER BY id");
$t->psql("SET shinsei.aad = 'row';"
         . " UPDATE outbox o SET body_enc = p.body_enc,"
         . "  next_attempt_at = now()"
         . " FROM outbox p WHERE (o.id, p.id) IN (($m1, $m2), ($m2, $m1))");
$t->mail->clear;
$t->mail->start;
$t->psql('NOTIFY shinsei_outbox');
$until = time + 20;
sleep 0.2 while time < $until
    && $t->psql("SELECT count(*) FROM outbox WHERE id IN ($m1, $m2)"
                . " AND status = 'dead'") < 2;
is($t->psql("SELECT string_agg(status || ' ' || last_error, ', ')"
            . " FROM outbox WHERE id IN ($m1, $m2)"),
   join(', ', ("dead cannot decrypt: unknown data key or not this row's value")
              x 2),
   'finding 10: two mails whose bodies were swapped are refused, dead');
is(scalar(grep { $_->{subject} =~ /再発行/ } $t->mail->messages), 0,
   '... and neither resident got the other\'s reset link');

# --- the first format: read, then bound to its row by the job ---------------

# first_format(plaintext, aad): a value as the version before wrote it,
# under k1, with the column's name as associated data
my ($k1) = $t->slurp("$t->{dir}/data.keys") =~ /^key k1 ([0-9a-f]{64})$/m;
sub first_format {
    my ($plain, $aad) = @_;
    my $py = <<'PY';
import base64, os, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
key, aad = bytes.fromhex(sys.argv[1]), sys.argv[2].encode()
nonce = os.urandom(12)
sealed = AESGCM(key).encrypt(nonce, sys.stdin.buffer.read(), aad)
print(base64.b64encode(nonce + sealed).decode())
PY
    my $tmp = "$t->{dir}/first.in";
    open(my $fh, '>', $tmp) or die $!;
    print $fh encode('UTF-8', $plain);
    close $fh;
    my $b64 = `python3 -c '$py' $k1 $aad < $tmp`;
    die "python3 failed\n" if $?;
    chomp $b64;
    return $b64;
}

my $marked = 'k1.v1:' . first_format('結 一郎（旧）', 'name');
$t->psql("SET shinsei.aad = 'row'; UPDATE citizens SET name_enc = '$marked'"
         . " WHERE id = $ida");
my $unmarked = 'k1:' . first_format('ムスビ イチロウ', 'name_kana');
is($t->psql("UPDATE citizens SET name_kana_enc = '$unmarked' WHERE id = $ida"
            . " RETURNING split_part(name_kana_enc, ':', 1)"), 'k1.v1',
   'a value of the first format written without the mark, as a worker of '
   . 'the version before would, is marked by sql/013');

# the job may bind them any moment now; either way the page reads them
like(my_page('aad.ichiro@example.jp'), qr{<dd>結 一郎（旧）</dd>.*<dd>ムスビ イチロウ</dd>}s,
     'values of the first format are read');

$until = time + 15;
sleep 0.2 while time < $until
    && $t->psql("SELECT count(*) FROM citizens WHERE id = $ida"
                . " AND (name_enc LIKE 'k1.v1:%'"
                . "      OR name_kana_enc LIKE 'k1.v1:%')") > 0;
is($t->psql("SELECT split_part(name_enc, ':', 1) || ' '"
            . " || split_part(name_kana_enc, ':', 1)"
            . " FROM citizens WHERE id = $ida"), 'k1 k1',
   'the re-encryption job writes them again under the same key, bound '
   . 'to the row');
like(my_page('aad.ichiro@example.jp'), qr{<dd>結 一郎（旧）</dd>.*<dd>ムスビ イチロウ</dd>}s,
     '... and they read the same');
like($t->error_log, qr/\[notice\][^\n]*re-encrypted \d+ values? under the data key "k1"/,
     '... as error.log says');

# a re-bound value moved to B's row fails like any other
my $bound = col($ida, 'name_enc');
$t->psql("SET shinsei.aad = 'row'; UPDATE citizens SET name_enc = '$bound'"
         . " WHERE id = $idb");
is(my_page('aad.jiro@example.jp'), 500,
   '... and once bound, cannot be moved to another row');

unlike(decode('UTF-8', $t->error_log), qr/結 |ムスビ|aad\./,
       'N-SEC-3: no name or address in error.log');

$t->done;
done_testing;
