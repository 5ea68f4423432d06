# Over TLS, as in production: HSTS, and the session cookie __Host-sid with
# Secure, HttpOnly, SameSite=Lax and no Domain (REQ N-SEC-3).
use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use ShinseiTest;
use ShinseiTest::Flows;

binmode(Test::More->builder->$_, ':encoding(UTF-8)')
    for qw(output failure_output todo_output);

my $t = ShinseiTest->new(tls => 1, mail => 1);

my $b = $t->browser;
my $r = $b->get('/');
is($r->{status}, 200, 'the site answers over TLS');
is($r->{headers}{'strict-transport-security'}, 'max-age=63072000; includeSubDomains',
   'with HSTS');

$r = $b->get('/login');
like($r->{headers}{'set-cookie'},
     qr{^__Host-sid=[A-Za-z0-9_-]{43}; Path=/; Secure; HttpOnly; SameSite=Lax$},
     'the session cookie is __Host- prefixed, Secure, HttpOnly, SameSite=Lax, without Domain');
ok($b->cookie('__Host-sid'), 'the browser keeps it');
ok(!$b->cookie('sid'), 'and no plain-http cookie is set over TLS, even with shinsei_insecure_cookie on');

my $u = signed_up_resident($t, email => 'secure@example.jp');
ok($u->cookie('__Host-sid'), 'sign-up, verification and login work over TLS');
is($u->get('/mypage')->{status}, 200, 'my page opens with the Secure cookie');
my $m = mail_for($t, 'secure@example.jp', qr/確認/);
like(link_path($m, qr{t=}) ? $m->{body} : '', qr{https://127\.0\.0\.1:\d+/verify\?t=},
     'links in mails use the configured https address');

$t->done;

# plain http without shinsei_insecure_cookie: the cookie stays Secure
my $p = ShinseiTest->new(insecure_cookie => 'off');
$r = $p->browser->get('/login');
like($r->{headers}{'set-cookie'}, qr{^__Host-sid=[^;]+; Path=/; Secure; HttpOnly; SameSite=Lax$},
     'on plain http the cookie is still Secure unless the loopback exception is on');
ok(!$r->{headers}{'strict-transport-security'}, 'and no HSTS is sent over plain http');
$p->done;

done_testing;
