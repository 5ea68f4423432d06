# Login and logout, sessions and their timeouts, the pause after repeated
# failures (REQ U-AUTH-1, N-SEC-1; OWASP ASVS 4.0.3 2.2.1, 3.2.1, 3.3.2).
use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX ();
use ShinseiTest;
use ShinseiTest::Flows;

binmode(Test::More->builder->$_, ':encoding(UTF-8)')
    for qw(output failure_output todo_output);

my $t = ShinseiTest->new(mail => 1);
my $email = 'hanako@example.jp';
my $pw = 'yamato-no-kuni-1';

my $b = $t->browser;
sign_up($t, $b, email => $email, name => "葛城 花子");
verify_from_mail($t, $b, $email, $pw);

# --- logging in -------------------------------------------------------------

$b = $t->browser;
my $r = $b->get('/login');
is($r->{status}, 200, 'the login page answers');
my $before = $b->cookie('sid');
ok($before, 'with a session for its form');

$r = $b->submit_form('/login', { email => 'Hanako@Example.jp', password => $pw });
is($r->{status}, 303, 'the right address (any case) and password log in');
is($r->{headers}{location}, '/mypage', 'to my page');
my $after = $b->cookie('sid');
ok($after && $after ne $before, 'the session ID changes at login (ASVS 3.2.1)');

$r = $b->get('/mypage');
is($r->{status}, 200, 'my page opens');
like($r->{text}, qr{<li class="site-nav__user">葛城 花子 さん</li>}, 'the header shows who is logged in');
like($r->{text}, qr{<a href="/logout">ログアウト</a>}, 'and the way out');
is($r->{headers}{'cache-control'}, 'no-store', 'personal pages are not cached');

my $old = $t->browser;
$old->set_cookie(sid => $before);
$r = $old->get('/mypage');
is($r->{status}, 303, 'the session ID of before the login no longer logs anyone in');

# --- wrong password, unknown address: the same answer ----------------------

my ($wrong, $unknown);
$r = log_in($t, $t->browser, $email, 'not-the-password');
is($r->{status}, 422, 'a wrong password is refused');
($wrong) = $r->{text} =~ m{<ul class="error-summary__list">\s*<li>(.*?)</li>}s;
is($wrong, 'メールアドレスまたはパスワードが正しくありません', '... with a message that does not say which');
like($r->{text}, qr{name="email" value="hanako\@example.jp"}, '... keeping the address typed');
unlike($r->{text}, qr{not-the-password}, '... but not the password');

$r = log_in($t, $t->browser, 'nobody@example.jp', 'not-the-password');
is($r->{status}, 422, 'an unknown address is refused');
($unknown) = $r->{text} =~ m{<ul class="error-summary__list">\s*<li>(.*?)</li>}s;
is($unknown, $wrong, '... with exactly the same message (no account enumeration)');
is($t->psql("SELECT count(*) FROM login_failures"), 2,
   'failures are counted per address, with an account or without (the '
   . 'pause gives nothing away either)');

$r = log_in($t, $t->browser, '', '');
like($r->{text}, qr{メールアドレスを入力してください}, 'an empty form asks for the address');
like($r->{text}, qr{パスワードを入力してください}, 'and the password');

# --- CSRF ---------------------------------------------------------------------

my $c = $t->browser;
$c->get('/login');
$r = $c->submit_form('/login', { email => $email, password => $pw }, without => ['_csrf']);
is($r->{status}, 422, 'a login without the CSRF token is refused');
like($r->{text}, qr{もう一度送信してください}, '... asking to send again');
like($r->{text}, qr{name="email" value="hanako\@example.jp"}, '... with the address still typed');
my $other = $t->browser;
$other->get('/login');
$c->get('/login');
my $foreign = $other->form('/login')->{hidden}{_csrf};
$r = $c->submit_form('/login', { email => $email, password => $pw, _csrf => $foreign });
is($r->{status}, 422, "a token of another session is refused");
$r = $c->submit_form('/login', { email => $email, password => $pw });
is($r->{status}, 303, 'the form sent again with its own token logs in');

# --- back to where the resident was going -----------------------------------

my $n = $t->browser;
$r = $n->get('/mypage/name');
is($r->{status}, 303, 'a personal page asks for login first');
is($r->{headers}{location}, '/login?next=/mypage/name', '... and remembers the page');
$n->follow($r);
$r = $n->submit_form('/login', { email => $email, password => $pw });
is($r->{headers}{location}, '/mypage/name', 'after login the resident is back on that page');

for my $next ('//evil.example/x', 'https://evil.example/', '/\\evil.example', "/x\r\nSet-Cookie: a=b") {
    my $e = $t->browser;
    (my $q = $next) =~ s/([^A-Za-z0-9])/sprintf('%%%02X', ord $1)/ge;
    $e->get("/login?next=$q");
    $r = $e->submit_form('/login', { email => $email, password => $pw, next => $next });
    is($r->{headers}{location}, '/mypage', "next=\Q$next\E does not lead off the site");
}

# --- timeouts: 30 minutes idle, 12 hours in all (ASVS 3.3.2) ----------------

my $idle = signed_up_resident($t, email => 'idle@example.jp');
$t->psql("UPDATE sessions SET last_seen_at = now() - interval '31 minutes' WHERE citizen_id IS NOT NULL AND id_hash = decode(encode(sha256('" . $idle->cookie('sid') . "'), 'hex'), 'hex')");
$r = $idle->get('/mypage');
is($r->{status}, 303, 'after 30 minutes without a request the session has ended');
is($r->{headers}{location}, '/login?next=/mypage&expired=1', '... and the login says why');
like($idle->follow($r)->{text}, qr{ログインの有効期限が切れたため、ログアウトしました}, '... in Japanese');

my $long = signed_up_resident($t, email => 'long@example.jp');
$t->psql("UPDATE sessions SET created_at = now() - interval '12 hours 1 minute' WHERE id_hash = decode(encode(sha256('" . $long->cookie('sid') . "'), 'hex'), 'hex')");
$r = $long->get('/mypage');
is($r->{status}, 303, 'after 12 hours a session ends however busy');

my $busy = signed_up_resident($t, email => 'busy@example.jp');
$t->psql("UPDATE sessions SET last_seen_at = now() - interval '29 minutes' WHERE id_hash = decode(encode(sha256('" . $busy->cookie('sid') . "'), 'hex'), 'hex')");
is($busy->get('/mypage')->{status}, 200, 'within 30 minutes the session lives');
is($t->psql("SELECT last_seen_at > now() - interval '1 minute' FROM sessions WHERE id_hash = decode(encode(sha256('" . $busy->cookie('sid') . "'), 'hex'), 'hex')"),
   't', 'and the request moved its idle time on');

# --- logout -----------------------------------------------------------------

my $l = signed_up_resident($t, email => 'out@example.jp');
my $sid = $l->cookie('sid');
$r = $l->get('/logout');
like($r->{text}, qr{<button class="button" type="submit">ログアウトする</button>}, 'logout is a button (a POST with its token)');
$r = $l->submit_form('/logout', {});
is($r->{status}, 303, 'logging out');
is($r->{headers}{location}, '/login?m=logged_out', 'leads to the login page');
like($r->{headers}{'set-cookie'}, qr{^sid=; Max-Age=0; Path=/}, 'the cookie is removed');
like($l->follow($r)->{text}, qr{ログアウトしました}, 'which says so');
is($t->psql("SELECT count(*) FROM sessions WHERE id_hash = decode(encode(sha256('$sid'), 'hex'), 'hex')"), 0,
   'the session row is gone');
my $replay = $t->browser;
$replay->set_cookie(sid => $sid);
is($replay->get('/mypage')->{status}, 303, 'the old cookie logs nobody in');

# --- the pause after 5 failures (ASVS 2.2.1) -----------------------------

my $victim = 'victim@example.jp';
sign_up($t, $t->browser, email => $victim, name => '被害 三郎');
my $victim_id = $t->psql("SELECT max(id) FROM citizens");
my $victim_failures = "SELECT count(*) FROM login_failures f JOIN citizens c "
    . "ON c.city = f.city AND c.email_index = f.email_index "
    . "WHERE c.id = $victim_id";
verify_from_mail($t, $t->browser, $victim, $pw);
$t->mail->clear;

for my $i (1 .. 5) {
    $r = log_in($t, $t->browser, $victim, "guess-$i-wrong");
    is($r->{status}, 422, "failure $i is refused");
}
$r = log_in($t, $t->browser, $victim, $pw);
is($r->{status}, 422, 'after 5 failures in 15 minutes even the right password waits');
like($r->{text}, qr{ログインとパスワードの確認を一時的に止めています。1分ほど待って}, '... saying how long');
my $m = mail_for($t, $victim, qr/ログインを一時的に止めています/);
ok($m, 'the owner is told by mail');
like($m->{body}, qr{^被害 三郎 様}m, '... by name');
is(scalar(grep { $_->{subject} =~ /止めています/ } $t->mail->messages), 1, 'once');
like($t->error_log, qr/password check refused: 5 failures for the address, paused for 30 s/, 'the pause is logged');
unlike($t->error_log, qr/\Q$victim\E/, 'the address never appears in the log');

# the pause ends: move the failures back in time
$t->psql("UPDATE login_failures SET at = at - interval '31 seconds'");
$r = log_in($t, $t->browser, $victim, "guess-6-wrong");
is($r->{status}, 422, 'after the pause one more attempt is checked (and fails)');
$t->psql("UPDATE login_failures SET at = at - interval '31 seconds'");
$r = log_in($t, $t->browser, $victim, $pw);
like($r->{text}, qr{一時的に止めています}, 'the next pause is longer: 31 s later it still holds');
$t->psql("UPDATE login_failures SET at = at - interval '30 seconds'");
$r = log_in($t, $t->browser, $victim, $pw);
is($r->{status}, 303, 'after it the right password logs in');
is($t->psql($victim_failures), 0, 'and the failures are forgotten');

# guesses sent at once take turns: no more than 5 are checked, and an
# address without an account is paused like one with an account
my $count = "SELECT count(*) FROM login_failures";
my $n0 = $t->psql($count);
my @kids;
for my $i (1 .. 12) {
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        my $res = log_in($t, $t->browser, 'no-account@example.jp',
                         "parallel-$i-wrong");
        POSIX::_exit($res->{status} == 422 ? 0 : 1);
    }
    push @kids, $pid;
}
my $refused = 0;
for (@kids) {
    waitpid($_, 0);
    $refused++ if $? == 0;
}
is($refused, 12, '12 guesses sent at once are all refused');
is($t->psql($count) - $n0, 5, '... only 5 of them were checked and counted');
$r = log_in($t, $t->browser, 'no-account@example.jp', 'one-more-wrong');
like($r->{text}, qr{一時的に止めています},
     'the address without an account is paused too');

# --- a stronger cost later: the stored hash is upgraded at login ------------

my $hash = $t->psql("SELECT password_hash FROM citizens WHERE email_index IS NOT NULL AND id = (SELECT min(id) FROM citizens)");
like($hash, qr{^\$scrypt\$ln=12,r=8,p=1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$}, 'hashes are stored with their parameters');
$t->stop;
$t->{kdf} = 'ln=13 r=8 p=1';
$t->start;
$r = log_in($t, $t->browser, $email, $pw);
is($r->{status}, 303, 'after the cost was raised the old hash still logs in');
like($t->psql("SELECT password_hash FROM citizens WHERE id = (SELECT min(id) FROM citizens)"),
     qr{^\$scrypt\$ln=13,r=8,p=1\$}, 'and is replaced by one of the new cost');
is(log_in($t, $t->browser, $email, $pw)->{status}, 303, 'which logs in too');

$t->done;
done_testing;
