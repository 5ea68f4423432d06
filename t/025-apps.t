# Apps (shinsei_app): each location serves one app descriptor, with its
# own routes, steps and cookie.  "webhook" is for providers' calls: no
# session, no CSRF, no browser headers, errors as JSON; the citizen site
# beside it keeps its own.
use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use ShinseiTest;

binmode(Test::More->builder->$_, ':encoding(UTF-8)')
    for qw(output failure_output todo_output);

my $t = ShinseiTest->new(server_extra => <<'EOF');
        location /webhooks/ {
            shinsei_app webhook;
        }
EOF

my $sessions = $t->psql('SELECT count(*) FROM sessions');

my $r = $t->get('/webhooks/payments');
is($r->{status}, 404, 'a webhook app without that route answers 404');
like($r->{headers}{'content-type'}, qr{^application/json}, 'as JSON');
is($r->{content}, qq{{"status":404}\n}, 'a line a provider can log');
ok(!$r->{headers}{'set-cookie'}, 'with no session cookie');
ok(!$r->{headers}{'content-security-policy'}, 'and none of the browser headers');

$r = $t->browser->post('/webhooks/payments', { event => 'charge.succeeded' });
is($r->{status}, 404, 'a POST without any CSRF token is not refused as a form: no route');
ok(!$r->{headers}{'set-cookie'}, 'no cookie either');
is($t->psql('SELECT count(*) FROM sessions'), $sessions,
   'no session was made for the calls');

$r = $t->get('/login');
is($r->{status}, 200, 'the citizen site on the same server');
like($r->{headers}{'set-cookie'} // '', qr{^sid=}, 'has its session cookie');
like($r->{headers}{'content-security-policy'} // '', qr{frame-ancestors 'none'},
     'and its security headers');

$r = $t->get('/no/such/page');
is($r->{status}, 404, 'the citizen site\'s own 404');
like($r->{text}, qr{<h1>ページが見つかりません</h1>}, 'is its Japanese page');

my ($rc, $out) = $t->nginx_t(<<"EOF");
load_module $t->{module};
events {}
http {
    shinsei_templates $ShinseiTest::TOP/html/templates;
    server { listen 127.0.0.1:1; location / { shinsei_app staffroom; } }
}
EOF
isnt($rc, 0, 'an unknown app fails nginx -t');
like($out, qr{"shinsei_app": unknown application "staffroom", expected "citizen", "webhook" or "error"},
     '... naming the apps there are');

$t->done;

done_testing;
