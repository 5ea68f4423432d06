# The findings of issue 7 on accounts that t/100-t/130 do not already show
# (OWASP ASVS 4.0.3 L2, IPA): finding 2 (the hourly caps of mail), 3
# (short and pre-NFKC hashes), 8 (the reset takes the same time for any
# address), 9 (the lockout mail once a day, the password budget, limits
# per IPv6 /64).
use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Encode qw(encode);
use IO::Socket::INET;
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use MIME::Base64 qw(encode_base64);
use POSIX ();
use Time::HiRes qw(time sleep);
use ShinseiTest;
use ShinseiTest::Flows;

binmode(Test::More->builder->$_, ':encoding(UTF-8)')
    for qw(output failure_output todo_output);

# /t64: a limit of one request a minute per $shinsei_client, the client
# taken from X-Forwarded-For (set by the test)
my $t = ShinseiTest->new(
    mail => 1,
    http_extra => 'limit_req_zone $shinsei_client zone=t64:1m rate=1r/m;'
                  . ' limit_req_status 429;',
    server_extra => 'set_real_ip_from 127.0.0.1;'
                    . ' real_ip_header X-Forwarded-For;'
                    . ' location = /t64 { limit_req zone=t64 nodelay;'
                    . ' shinsei_app citizen; }');
my $pw = 'correct horse battery';

signed_up_resident($t, email => 'kakunin@example.jp', name => '確認 花子');
my $id = $t->psql("SELECT id FROM citizens WHERE city = 'katsuragi'"
                  . " ORDER BY id DESC LIMIT 1");

# --- finding 3: a hash of before (the bytes as typed, or short) -------------

# scrypt_hash(password): a hash as stored, of the bytes given, at the
# harness's cost (ln=12 r=8 p=1)
sub scrypt_hash {
    my ($bytes) = @_;
    my $salt = join '', map { chr int rand 256 } 1 .. 16;
    my $py = 'import base64,hashlib,sys;'
           . 'pw=sys.stdin.buffer.read();s=bytes.fromhex(sys.argv[1]);'
           . 'h=hashlib.scrypt(pw,salt=s,n=4096,r=8,p=1,dklen=32);'
           . 'print(base64.b64encode(h).decode())';
    open(my $fh, '>', "$t->{dir}/pw.in") or die $!;
    print $fh $bytes;
    close $fh;
    my $hex = unpack 'H*', $salt;
    my $h = `python3 -c '$py' $hex < $t->{dir}/pw.in`;
    die "python3 failed\n" if $?;
    chomp $h;
    return '$scrypt$ln=12,r=8,p=1$' . encode_base64($salt, '') . '$' . $h;
}

# a full-width password hashed as typed, as the version before stored it
my $wide = 'ｙａｍａｔｏ ｎｏ ｋｕｎｉ ２０２６';
my $old = scrypt_hash(encode('UTF-8', $wide));
$t->psql("UPDATE citizens SET password_hash = '$old' WHERE id = $id");
is(log_in($t, $t->browser, 'kakunin@example.jp', 'yamato no kuni 2026')->{status},
   422, 'finding 3: a hash of the bytes as typed is not of the NFKC form');
is(log_in($t, $t->browser, 'kakunin@example.jp', $wide)->{status}, 303,
   '... but the full-width password as typed logs in (the raw bytes tried '
   . 'second)');
my $new = $t->psql("SELECT password_hash FROM citizens WHERE id = $id");
isnt($new, $old, '... and the hash is replaced');
is(log_in($t, $t->browser, 'kakunin@example.jp', 'yamato no kuni 2026')->{status},
   303, '... by one of the NFKC form: half-width now logs in too');

# a password shorter than 12 (the minimum was 8) still logs in, and the
# resident is asked to change it
$t->psql("UPDATE citizens SET password_hash = '" . scrypt_hash('hachimoji')
         . "' WHERE id = $id");
my $sb = $t->browser;
my $r = log_in($t, $sb, 'kakunin@example.jp', 'hachimoji');
is($r->{status}, 303, 'finding 3: a stored 9-character password still logs in');
is($r->{headers}{location}, '/mypage/password?m=password_short',
   '... and leads to the change of password');
$r = $sb->follow($r);
like($r->{text}, qr{いまのパスワードは短いため、12文字以上のものに変更してください},
     '... which says why');
$r = $sb->submit_form('/mypage/password', { current_password => 'hachimoji',
                                            password => 'hachimoji-2' });
like($r->{text}, qr{新しいパスワードは12文字以上で入力してください},
     '... and refuses a new one shorter than 12');
$r = $sb->submit_form('/mypage/password', { current_password => 'hachimoji',
                                            password => $pw });
is($r->{status}, 303, '... and takes a long one');
$r = log_in($t, $t->browser, 'kakunin@example.jp', $pw);
is($r->{headers}{location}, '/mypage', 'which logs in straight to my page');

# --- finding 8: the reset takes the same time for any address ----------------

# the median of n reset requests for an address, in ms: the POST alone,
# written at once on a connection without Nagle's delay, to its answer
sub reset_median {
    my ($email, $n) = @_;
    my @ms;
    for (1 .. $n) {
        my $f = $t->browser;
        $f->get('/password/forgot');
        my $body = ShinseiTest::Browser::urlencode([
            _csrf => $f->form('/password/forgot')->{hidden}{_csrf},
            email => $email ]);
        my $req = "POST /password/forgot HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                . 'Cookie: sid=' . $f->cookie('sid') . "\r\n"
                . "Content-Type: application/x-www-form-urlencoded\r\n"
                . 'Content-Length: ' . length($body) . "\r\n"
                . "Connection: close\r\n\r\n$body";
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $t->port) or die $!;
        setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1);
        my $t0 = time;
        syswrite($s, $req);
        my $got = '';
        while (sysread($s, my $buf, 65536)) { $got .= $buf; }
        push @ms, 1000 * (time - $t0);
        die "reset answered: " . substr($got, 0, 40) . "\n"
            unless $got =~ m{^HTTP/1\.1 303 };
    }
    @ms = sort { $a <=> $b } @ms;
    return $ms[$#ms / 2];
}
reset_median($_, 3) for 'kakunin@example.jp', 'nobody@example.jp';   # warm
my (@known, @unknown);
for (1 .. 7) {      # interleaved, so a slow moment falls on both
    push @known, reset_median('kakunin@example.jp', 7);
    push @unknown, reset_median('nobody@example.jp', 7);
}
my $med = sub { my @s = sort { $a <=> $b } @_; $s[$#s / 2] };
my ($mk, $mu) = ($med->(@known), $med->(@unknown));
diag(sprintf 'finding 8: reset medians: known %.2f ms, unknown %.2f ms',
     $mk, $mu);
# a quarter of the slower: the difference before sql/012 and 015 (the
# unknown address wrote and committed nothing) was more than half
cmp_ok(abs($mk - $mu), '<', 0.02 + 0.25 * ($mk > $mu ? $mk : $mu),
       sprintf('finding 8: a reset for a known address (%.2f ms) and an '
               . 'unknown one (%.2f ms) take the same time', $mk, $mu));
is($t->psql("SELECT count(*) FROM outbox WHERE key LIKE 'reset:%'"
            . " GROUP BY subject ORDER BY 1 LIMIT 1") > 0, 1,
   '... both wrote and committed a mail');

# --- finding 2: at most 10 mails an hour to an address, or for an account ---

# a reset mail each time, its key moved aside so that the next is not the
# same two minutes' mail: as requests spread over the hour would be
$t->psql("DELETE FROM outbox");
my $log0 = length $t->error_log;
for my $i (1 .. 12) {
    my $f = $t->browser;
    $f->get('/password/forgot');
    $r = $f->submit_form('/password/forgot', { email => 'cap@example.jp' });
    is($r->{status}, 303, "reset request $i for one address is answered as any")
        if $i > 10;
    $t->psql("UPDATE outbox SET key = key || ':moved' || id"
             . " WHERE key NOT LIKE '%:moved%'");
}
is($t->psql("SELECT count(*) FROM outbox"), 10,
   'finding 2: 12 requests within the hour queue 10 mails to the address');
like(substr($t->error_log, $log0),
     qr/\[warn\][^\n]*database says: WARNING: mail reset:[0-9a-f]+:\d+ not queued: over the hourly cap of its address or account/,
     '... and the others are logged as not queued (no address in the line)');

# the account: changes of address to ten new addresses each mail the new
# one and the old one
$t->psql("DELETE FROM outbox");
$log0 = length $t->error_log;
my $cb = $t->browser;
log_in($t, $cb, 'kakunin@example.jp', $pw);
for my $i (1 .. 6) {
    $cb->get('/mypage/email');
    $r = $cb->submit_form('/mypage/email', { email => "new$i\@example.jp",
                                             current_password => $pw });
    is($r->{status}, 303, "change of address $i is answered as usual");
}
is($t->psql("SELECT count(*) FROM outbox WHERE account = 'citizen:$id'"), 10,
   'finding 2: one account causes 10 mails an hour at most, to any addresses');
is($t->psql("SELECT count(*) FROM outbox WHERE subject LIKE '%新しいメールアドレスの確認'"),
   5, '... the sixth new address got nothing');
like(substr($t->error_log, $log0), qr/mail email_confirm:\d+ not queued: over the hourly cap/,
     '... as error.log says');

# --- finding 9: the lockout mail once a day -----------------------------------

$t->psql("DELETE FROM outbox");     # under the caps again
$t->mail->clear;
for my $round (1 .. 3) {
    log_in($t, $t->browser, 'kakunin@example.jp', "wrong-$round-$_") for 1 .. 5;
    # the next pause window: the failures of before are old
    $t->psql("UPDATE login_failures SET at = at - interval '20 minutes'");
}
sleep 1;
my @lock = grep { $_->{subject} =~ /ログインを一時的に止めています/ }
           $t->mail->wait_for(to => 'kakunin@example.jp', count => 2,
                              timeout => 3);
is(scalar @lock, 1, 'finding 9: three pauses in an hour send the owner one '
                    . 'mail (one a day), not one each 15 minutes');

# --- finding 9: the password budget -------------------------------------------

{
    my $tb = ShinseiTest->new(http_extra => 'shinsei_password_budget 1;',
                              kdf => 'ln=16 r=8 p=1');
    my @kids;
    pipe(my $rd, my $wr) or die $!;
    for my $i (1 .. 4) {
        my $pid = fork() // die "fork: $!";
        if ($pid == 0) {
            close $rd;
            my $res = log_in($tb, $tb->browser, "flood$i\@example.jp",
                             'not the password at all');
            print $wr "$res->{status}\n";
            close $wr;
            POSIX::_exit(0);
        }
        push @kids, $pid;
    }
    close $wr;
    my @st = sort map { chomp; $_ } <$rd>;
    waitpid($_, 0) for @kids;
    ok((grep { $_ == 503 } @st) >= 1,
       "finding 9: past shinsei_password_budget a login answers 503 at once (@st)");
    ok((grep { $_ == 422 } @st) >= 1, '... while the one within it is checked');
    like($tb->error_log, qr/\[warn\][^\n]*password check refused: 1 hashes already running or queued \(shinsei_password_budget\)/,
         '... and error.log says why');
    like($tb->get('/login')->{text}, qr{<form}, 'afterwards the login page is served');
    $tb->done;
}

# --- finding 9: limits per client: an IPv4 address, or an IPv6 /64 -------------

my $from = sub { $t->browser->get('/t64', 'X-Forwarded-For' => $_[0])->{status} };
is($from->('2001:db8:1:2::a'), 404, 'a first request from an IPv6 address passes the limit');
is($from->('2001:db8:1:2:ffff:1:2:3'), 429,
   'finding 9: another address of the same /64 is the same client for limit_req');
is($from->('2001:db8:1:3::a'), 404, '... the next /64 is another client');
is($from->('192.0.2.1'), 404, 'an IPv4 address is a client');
is($from->('192.0.2.2'), 404, '... and its neighbour another one');
is($from->('192.0.2.1'), 429, '... limited on its own');

$t->done;
done_testing;
