# Mail to a relay that wants TLS (STARTTLS, or smtps) and a login
# (AUTH PLAIN): the certificate and its name are checked (REQ N-SEC-3).
use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Path qw(make_path);
use IO::Socket::INET;
use Time::HiRes qw(sleep time);
use ShinseiTest qw(free_port);
use ShinseiTest::Mail;
use ShinseiTest::Flows;

binmode(Test::More->builder->$_, ':encoding(UTF-8)')
    for qw(output failure_output todo_output);

my $dir = File::Temp::tempdir('shinsei-tls-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $dir;

# a CA of our own and a certificate for "localhost" signed by it
sub run { system(@_) == 0 or die "@_ failed\n" }
run("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=Test-CA "
    . "-keyout $dir/ca.key -out $dir/ca.crt >/dev/null 2>&1");
run("openssl req -newkey rsa:2048 -nodes -subj /CN=localhost "
    . "-keyout $dir/server.key -out $dir/server.csr >/dev/null 2>&1");
open(my $ext, '>', "$dir/ext") or die;
print $ext "subjectAltName=DNS:localhost\n";
close $ext;
run("openssl x509 -req -in $dir/server.csr -CA $dir/ca.crt -CAkey $dir/ca.key "
    . "-CAcreateserial -days 2 -extfile $dir/ext -out $dir/server.crt >/dev/null 2>&1");
open(my $auth, '>', "$dir/smtp.auth") or die;
print $auth "shinsei:relay-secret\n";
close $auth;
chmod 0600, "$dir/smtp.auth";

my @servers;
sub tls_server {
    my ($mode) = @_;
    my $port = free_port();
    my $maildir = "$dir/maildir-$mode";
    make_path("$maildir/new", "$maildir/tmp", "$maildir/cur");
    my $pid = fork // die;
    if ($pid == 0) {
        $ENV{PYTHONPATH} = "$FindBin::Bin/lib";
        open(STDOUT, '>', "$dir/$mode.log");
        open(STDERR, '>&', \*STDOUT);
        exec('/usr/bin/python3', "$FindBin::Bin/lib/shinsei_smtp_tls.py", $mode,
             $port, "$dir/server.crt", "$dir/server.key", $maildir,
             'shinsei', 'relay-secret') or POSIX::_exit(127);
    }
    push @servers, $pid;
    for (1 .. 100) {
        last if IO::Socket::INET->new("127.0.0.1:$port");
        sleep 0.05;
    }
    return ($port, $maildir);
}

sub messages {
    my ($maildir) = @_;
    return map { ShinseiTest::Mail::parse(do { local (@ARGV, $/) = $_; <> }) }
           sort glob("$maildir/new/*");
}

sub wait_row {
    my ($t, $cond) = @_;
    my $t0 = time;
    while (time - $t0 < 15) {
        my $v = $t->psql("SELECT count(*) FROM outbox WHERE $cond");
        return 1 if $v > 0;
        sleep 0.2;
    }
    return 0;
}

# --- STARTTLS with a login -------------------------------------------------

my ($port, $maildir) = tls_server('starttls');
my $t = ShinseiTest->new(
    smtp_url => "smtp://localhost:$port",
    smtp_opts => "starttls ca_file=$dir/ca.crt auth_file=$dir/smtp.auth "
               . 'timeout=3s retry=1s attempts=3');
my $r = sign_up($t, $t->browser, email => 'tls@example.jp');
is($r->{status}, 303, 'a sign-up with a relay behind STARTTLS');
ok(wait_row($t, "status = 'sent'"), 'the mail is sent over STARTTLS, logged in with AUTH PLAIN');
my @m = messages($maildir);
is(scalar @m, 1, 'the relay stored it');
is($m[0]{subject}, '【葛城市】メールアドレスの確認', 'whole and readable');
unlike($t->error_log, qr/relay-secret/, 'the relay password never reaches the log');
$t->done;

# the same relay, a wrong password
open($auth, '>', "$dir/wrong.auth") or die;
print $auth "shinsei:not-it\n";
close $auth;
chmod 0600, "$dir/wrong.auth";
$t = ShinseiTest->new(
    smtp_url => "smtp://localhost:$port",
    smtp_opts => "starttls ca_file=$dir/ca.crt auth_file=$dir/wrong.auth "
               . 'timeout=3s retry=1s attempts=1');
sign_up($t, $t->browser, email => 'wrongpass@example.jp');
ok(wait_row($t, "status = 'dead'"), 'a refused login leaves the mail unsent');
like($t->psql("SELECT last_error FROM outbox"), qr/^authentication refused: 535/,
     '... with the reason kept for the operator');
$t->done;

# a certificate not signed by a trusted CA
$t = ShinseiTest->new(
    smtp_url => "smtp://localhost:$port",
    smtp_opts => "starttls auth_file=$dir/smtp.auth timeout=3s retry=1s attempts=1");
sign_up($t, $t->browser, email => 'untrusted@example.jp');
ok(wait_row($t, "status = 'dead'"), 'an untrusted certificate stops the mail');
like($t->psql("SELECT last_error FROM outbox"), qr/certificate is not trusted/,
     '... saying why');
is(scalar(grep { $_->{to} =~ /untrusted/ } messages($maildir)), 0,
   '... and nothing reached the relay');
$t->done;

# a relay that offers no STARTTLS while the configuration asks for it
my $plain = ShinseiTest::Mail->new(dir => $dir);
$t = ShinseiTest->new(
    smtp_url => $plain->url,
    smtp_opts => "starttls ca_file=$dir/ca.crt timeout=3s retry=1s attempts=1");
sign_up($t, $t->browser, email => 'downgrade@example.jp');
ok(wait_row($t, "status = 'dead'"), 'a relay without STARTTLS gets no mail in the clear');
like($t->psql("SELECT last_error FROM outbox"), qr/offers no STARTTLS/, '... saying why');
is($plain->count, 0, '... nothing was sent to it');
$plain->stop;
$t->done;

# --- smtps: TLS from the first byte ---------------------------------------

my ($sport, $smaildir) = tls_server('smtps');
$t = ShinseiTest->new(
    smtp_url => "smtps://localhost:$sport",
    smtp_opts => "ca_file=$dir/ca.crt auth_file=$dir/smtp.auth timeout=3s retry=1s attempts=3");
sign_up($t, $t->browser, email => 'smtps@example.jp');
ok(wait_row($t, "status = 'sent'"), 'the mail is sent over smtps');
is(scalar(messages($smaildir)), 1, 'and stored by the relay');
$t->done;

kill 'TERM', @servers;
waitpid($_, 0) for @servers;

done_testing;
