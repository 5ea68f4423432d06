# My page: name, password, address (confirmed from the new address, the
# old one told) and leaving the service (REQ U-AUTH-1, N-SEC-1).
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
my $pw = 'kaminari-okoshi';

my $b = signed_up_resident($t, email => 'saburo@example.jp', password => $pw,
                           name => '葛城 三郎', name_kana => 'カツラギ サブロウ');
my $r = $b->get('/mypage');
like($r->{text}, qr{<dt>氏名</dt>\s*<dd>葛城 三郎</dd>}, 'my page shows the name');
like($r->{text}, qr{<dt>フリガナ</dt>\s*<dd>カツラギ サブロウ</dd>}, 'the フリガナ');
like($r->{text}, qr{<dt>メールアドレス</dt>\s*<dd>saburo\@example.jp</dd>}, 'and the address');

for my $path (qw(/mypage /mypage/name /mypage/password /mypage/email /mypage/delete)) {
    is($t->browser->get($path)->{status}, 303, "$path needs a login");
}

# --- name -----------------------------------------------------------------

$r = $b->get('/mypage/name');
like($r->{text}, qr{name="name" value="葛城 三郎"}, 'the name form shows the current name');
like($r->{text}, qr{name="name_kana" value="カツラギ サブロウ"}, 'and フリガナ');
$r = $b->submit_form('/mypage/name', { name => '', name_kana => 'ｶﾂﾗｷﾞ' });
is($r->{status}, 422, 'an empty name is refused');
like($r->{text}, qr{氏名を入力してください}, '... asking for it');
like($r->{text}, qr{フリガナは全角カタカナで入力してください}, 'half-width kana is refused too');
$r = $b->submit_form('/mypage/name', { name => '葛城 三郎太', name_kana => 'かつらぎ さぶろうた' });
is($r->{status}, 303, 'a new name is saved');
is($r->{headers}{location}, '/mypage?m=name_changed', 'back to my page');
$r = $b->follow($r);
like($r->{text}, qr{氏名を変更しました}, 'which says so');
like($r->{text}, qr{<dd>葛城 三郎太</dd>}, 'and shows the new name');
like($r->{text}, qr{<dd>カツラギ サブロウタ</dd>}, 'and フリガナ, in katakana');

# --- password -------------------------------------------------------------

my $second = log_in($t, my $other = $t->browser, 'saburo@example.jp', $pw);
is($other->get('/mypage')->{status}, 200, 'the resident is logged in on a second device');

$r = $b->get('/mypage/password');
$r = $b->submit_form('/mypage/password', { current_password => 'wrong one', password => 'new password 2026' });
is($r->{status}, 422, 'a wrong current password is refused');
like($r->{text}, qr{現在のパスワードが正しくありません}, '... saying so');
unlike($r->{text}, qr{new password 2026}, '... showing no password');
$r = $b->submit_form('/mypage/password', { current_password => $pw, password => '123456789012' });
like($r->{text}, qr{よく使われていて推測されやすい新しいパスワードです}, 'a common new password is refused');
$r = $b->submit_form('/mypage/password', { current_password => $pw, password => 'new password 2026' });
is($r->{status}, 303, 'the password is changed');
like($b->follow($r)->{text}, qr{パスワードを変更しました。ほかの端末ではログアウトしました}, 'my page says so');
is($b->get('/mypage')->{status}, 200, 'this device stays logged in');
is($other->get('/mypage')->{status}, 303, 'the other device is logged out');
ok(mail_for($t, 'saburo@example.jp', qr/パスワードを変更しました/), 'a notice mail is sent');
is(log_in($t, $t->browser, 'saburo@example.jp', 'new password 2026')->{status}, 303, 'the new password works');
$pw = 'new password 2026';

# a stolen session cannot guess the password: failures count as at the login
my $g = signed_up_resident($t, email => 'guess@example.jp');
$g->get('/mypage/password');
for my $i (1 .. 5) {
    $g->submit_form('/mypage/password', { current_password => "guess $i", password => 'whatever new 1' });
}
$r = $g->submit_form('/mypage/password', { current_password => 'correct horse battery', password => 'whatever new 1' });
is($r->{status}, 422, 'after 5 wrong current passwords even the right one waits');
like($r->{text}, qr{一時的に止めています}, '... saying so');
ok(mail_for($t, 'guess@example.jp', qr/一時的に止めています/), '... and the owner is told by mail');
is(log_in($t, $t->browser, 'guess@example.jp', 'correct horse battery')->{status}, 422,
   '... and the login pauses too');

# --- address ----------------------------------------------------------------

$r = $b->get('/mypage/email');
like($r->{text}, qr{今のメールアドレス：saburo\@example.jp}, 'the address form shows the current one');
$r = $b->submit_form('/mypage/email', { email => 'saburo@example.jp', current_password => $pw });
like($r->{text}, qr{今と同じメールアドレスです}, 'the same address is refused');
$r = $b->submit_form('/mypage/email', { email => 'new-saburo@example.jp', current_password => 'nope' });
like($r->{text}, qr{現在のパスワードが正しくありません}, 'the current password is needed');
like($r->{text}, qr{name="email" value="new-saburo\@example.jp"}, '... the new address kept');
like($r->{text}, qr{今のメールアドレス：saburo\@example.jp}, '... and the current one still shown');
$r = $b->submit_form('/mypage/email', { email => 'New-Saburo@Example.jp', current_password => $pw });
is($r->{status}, 303, 'a change of address is accepted');
is($r->{headers}{location}, '/mypage/email/sent', 'and waits for its confirmation');

my $notice = mail_for($t, 'saburo@example.jp', qr/メールアドレスの変更のお手続きがありました/);
ok($notice, 'the old address is told at once');
my $confirm = mail_for($t, 'new-saburo@example.jp', qr/新しいメールアドレスの確認/);
ok($confirm, 'the new address gets a confirmation link');
like($b->get('/mypage')->{text}, qr{<dd>saburo\@example.jp</dd>}, 'until it is followed the old address stays');

my $path = link_path($confirm, qr{/email/confirm\?t=});
my $anywhere = $t->browser;
$r = $anywhere->get($path);
is($r->{status}, 303, 'finding 7: the link moves its token into the session');
is($r->{headers}{'referrer-policy'}, 'no-referrer', '... with no Referer sent on');
$r = $anywhere->follow($r);
like($r->{text}, qr{メールアドレスを変更する</button>}, 'the link opens a confirmation (any browser)');
$r = $anywhere->submit_form('/email/confirm', {});
is($r->{status}, 303, 'confirming changes the address');
is($r->{headers}{location}, '/login?m=email_changed', '... and a browser not logged in is sent to the login');
like($b->get('/mypage')->{text}, qr{<dd>new-saburo\@example.jp</dd>}, 'my page shows the new address');
is(log_in($t, $t->browser, 'new-saburo@example.jp', $pw)->{status}, 303, 'the new address logs in');
is(log_in($t, $t->browser, 'saburo@example.jp', $pw)->{status}, 422, 'the old one does not');
is($anywhere->follow($anywhere->get($path))->{status}, 404,
   'the confirmation link works once');

# an address taken meanwhile by another account
my $c = signed_up_resident($t, email => 'shiro@example.jp');
$c->get('/mypage/email');
$c->submit_form('/mypage/email', { email => 'taken@example.jp', current_password => 'correct horse battery' });
my $taken_link = link_path(mail_for($t, 'taken@example.jp', qr/確認/), qr{/email/confirm\?t=});
signed_up_resident($t, email => 'taken@example.jp');
$c->get($taken_link);
$r = $c->submit_form('/email/confirm', {});
like($r->{text}, qr{ほかのアカウントで使われているため、変更できませんでした}, 'an address taken meanwhile is refused, saying so');

# --- leaving ---------------------------------------------------------------

my $sid = $b->cookie('sid');
$r = $b->get('/mypage/delete');
like($r->{text}, qr{元に戻せません}, 'leaving says it cannot be undone');
$r = $b->submit_form('/mypage/delete', { current_password => 'wrong' });
like($r->{text}, qr{現在のパスワードが正しくありません}, 'it needs the password');
is($t->psql("SELECT count(*) FROM citizens WHERE id = (SELECT min(id) FROM citizens)"), 1, 'nothing was deleted');
my $id = $t->psql("SELECT min(id) FROM citizens");
$r = $b->submit_form('/mypage/delete', { current_password => $pw });
is($r->{status}, 303, 'the account is deleted');
is($r->{headers}{location}, '/goodbye', 'with a last page');
like($r->{headers}{'set-cookie'}, qr{^sid=; Max-Age=0}, 'the cookie is removed');
like($b->follow($r)->{text}, qr{<h1>退会しました</h1>}, 'which says it is done');
is($t->psql("SELECT count(*) FROM citizens WHERE id = $id"), 0, 'the account row is gone');
is($t->psql("SELECT count(*) FROM sessions WHERE citizen_id = $id"), 0, 'and its sessions');
is($t->psql("SELECT count(*) FROM tokens WHERE citizen_id = $id"), 0, 'and its tokens');
ok(mail_for($t, 'new-saburo@example.jp', qr/退会のお手続きが完了しました/), 'a last mail confirms it');
is(log_in($t, $t->browser, 'new-saburo@example.jp', $pw)->{status}, 422, 'the address no longer logs in');
my $replay = $t->browser;
$replay->set_cookie(sid => $sid);
is($replay->get('/mypage')->{status}, 303, 'the old session is gone');

$t->done;
done_testing;
