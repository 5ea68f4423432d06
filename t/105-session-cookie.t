# Finding 1 (ASVS 3.4, session fixation through the __Host- prefix): the
# Cookie header is parsed strictly (RFC 6265 5.4): pairs split on ";"
# only, the name matched exactly, and two values of the session cookie
# are no session at all.  nginx's own parser matches names ignoring case,
# splits on "," and takes the first match, so a sibling domain could have
# planted "x=1,__Host-sid=<their session>" with Domain= the parent domain.
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

my $t = ShinseiTest->new(mail => 1);

my $victim = signed_up_resident($t, email => 'victim@example.jp');
my $attacker = signed_up_resident($t, email => 'attacker@example.jp',
                                  name => '攻撃 者', name_kana => 'コウゲキ シャ');
my ($v, $a) = ($victim->cookie('sid'), $attacker->cookie('sid'));
isnt($v, $a, 'two residents, two sessions');

# who(COOKIE HEADER...): whose my page the request opens, or ''
sub who {
    my (@cookies) = @_;
    my $b = $t->browser;
    my $r = $b->request('GET', '/mypage', { headers => {
        cookie => @cookies > 1 ? \@cookies : $cookies[0] } });
    return '' unless $r->{status} == 200;
    return $r->{text} =~ /<dd>(\S+ \S+)<\/dd>/ ? $1 : '?';
}

is(who("sid=$v"), '葛城 太郎', 'the victim\'s cookie opens the victim\'s page');
is(who("lang=ja; sid=$v; theme=dark"), '葛城 太郎', 'among other cookies too');
is(who("sid = $v "), '葛城 太郎', 'with spaces around the = and the value');

is(who("x=1,sid=$a"), '',
   'finding 1: "x=1,sid=<attacker>": a comma does not start a cookie');
is(who("x=1,sid=$a; sid=$v"), '葛城 太郎',
   'finding 1: the planted pair is one cookie named "x", the real one counts');
is(who("SID=$a"), '', 'finding 1: the name is matched exactly, case included');
is(who("Sid=$a; sid=$v"), '葛城 太郎', '... so a look-alike name is ignored');

my $log = length $t->error_log;
is(who("sid=$a; sid=$v"), '', 'finding 1: two values of the session cookie are no session');
is(who("sid=$v; sid=$a"), '', '... in either order');
is(who("sid=$v", "sid=$a"), '', '... and in two Cookie headers (HTTP/2 sends them so)');
like(substr($t->error_log, $log), qr/shinsei: two session cookies: neither is used/,
     'the log says so');

# a session fixed on a victim's browser never logs the victim into the
# attacker's account: the victim's request with both cookies is no one's
my $b = $t->browser;
$b->set_cookie('sid', $a);
my $r = $b->request('GET', '/login', { headers => { cookie => "sid=$a; sid=$v" } });
is($r->{status}, 200, 'the login page still answers');
unlike($r->{text}, qr{攻撃 者}, 'as nobody: not the attacker\'s session');

$t->done;

done_testing;
