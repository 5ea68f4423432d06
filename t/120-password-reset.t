# A forgotten password (REQ U-AUTH-2): the same answer for any address, a
# link valid one hour and once, every session ended, a notice mail.
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
my $email = 'jiro@example.jp';
my $old = 'first password here';
my $new = 'second password here';

my $logged = signed_up_resident($t, email => $email, password => $old, name => '葛城 次郎');
is($logged->get('/mypage')->{status}, 200, 'a resident is logged in on one device');
$t->mail->clear;

# --- asking ---------------------------------------------------------------

my $b = $t->browser;
my $r = $b->get('/password/forgot');
is($r->{status}, 200, 'the reset page answers');
$r = $b->submit_form('/password/forgot', { email => 'JIRO@example.jp' });
is($r->{status}, 303, 'asking for a reset');
is($r->{headers}{location}, '/password/forgot/sent', 'leads to the next page');
my $answer = $b->follow($r)->{text};
like($answer, qr{入力したメールアドレスで登録されている場合は}, 'which does not say whether the address has an account');

my $n = $t->browser;
$n->get('/password/forgot');
$r = $n->submit_form('/password/forgot', { email => 'nobody@example.jp' });
is($r->{headers}{location}, '/password/forgot/sent', 'an unknown address gets the same answer');
is($n->follow($r)->{text}, $answer, 'the very same page');

$r = $t->browser->submit_form('/password/forgot', { email => 'not an address' }, from => '/password/forgot');
is($r->{status}, 422, 'a malformed address is refused on the form');
like($r->{text}, qr{name="email" value="not an address"}, 'with what was typed');

my $m = mail_for($t, $email, qr/パスワードの再発行/);
ok($m, 'the owner gets the reset mail');
like($m->{body}, qr{有効期限は1時間で、1回だけ使えます}, 'which says it works one hour, once');
my $path = link_path($m, qr{/password/reset\?t=});
ok($path, 'with a link');
# finding 8: the unknown address gets a mail too (the same work: a row
# written and committed either way), which says it has no account
my $u = mail_for($t, 'nobody@example.jp', qr/パスワードの再発行/);
ok($u, 'finding 8: an unknown address gets a mail as well');
like($u->{body}, qr{このメールアドレスで登録されたアカウントはありません},
     '... saying no account has this address');
like($u->{body}, qr{/signup}, '... with the way to sign up');
unlike($u->{body}, qr{/password/reset\?t=}, '... and no link to reset anything');

# --- the link -----------------------------------------------------------

my $reset = $t->browser;
$r = $reset->get($path);
is($r->{status}, 303, 'finding 7: the link moves its token into the session');
is($r->{headers}{location}, '/password/reset', '... and comes back without it');
$r = $reset->follow($r);
is($r->{status}, 200, 'the link opens the form');
is($r->{headers}{'referrer-policy'}, 'no-referrer', '... sending no Referer on');
like($r->{text}, qr{<label class="form-field__label" for="field-password">新しいパスワード}, 'asking for the new password');

$r = $reset->submit_form('/password/reset', { password => 'short' });
is($r->{status}, 422, 'a too short new password is refused');
like($r->{text}, qr{新しいパスワードは12文字以上で入力してください}, '... saying why (12 characters, finding 3)');
ok(!exists $reset->form('/password/reset')->{hidden}{t},
   '... the form carries no token (the session holds the link)');
$r = $reset->submit_form('/password/reset', { password => '1234567890qwerty' });
like($r->{text}, qr{よく使われていて推測されやすい}, 'a common password is refused');

$r = $reset->submit_form('/password/reset', { password => $new });
is($r->{status}, 303, 'a good new password is set');
is($r->{headers}{location}, '/login?m=password_reset', 'and leads to the login');
like($reset->follow($r)->{text}, qr{パスワードを変更しました。新しいパスワードでログインしてください}, 'which says so');

is($logged->get('/mypage')->{status}, 303, 'the session on the other device has ended');
is(log_in($t, $t->browser, $email, $old)->{status}, 422, 'the old password no longer works');
is(log_in($t, $t->browser, $email, $new)->{status}, 303, 'the new one does');

$m = mail_for($t, $email, qr/パスワードを変更しました/);
ok($m, 'a notice mail confirms the change');
like($m->{body}, qr{お心当たりのない場合}, '... telling what to do if it was not the owner');

my $twice = $t->browser;
$twice->get('/');
$r = $twice->follow($twice->get($path));
is($r->{status}, 404, 'the link cannot be used twice');
like($r->{text}, qr{このリンクは既に使われています}, '... and says so');

my $again = $t->browser;
$again->get('/password/forgot');
$again->submit_form('/password/forgot', { email => $email });
my @mails = mail_for($t, $email, qr/パスワードの再発行/, count => 1);
is(scalar @mails, 1, 'a second request within two minutes sends no second mail');

# --- an expired link ---------------------------------------------------------

signed_up_resident($t, email => 'late@example.jp');
my $x = $t->browser;
$x->get('/password/forgot');
$x->submit_form('/password/forgot', { email => 'late@example.jp' });
my $late = link_path(mail_for($t, 'late@example.jp', qr/パスワードの再発行/), qr{/password/reset\?t=});
$t->psql("UPDATE tokens SET expires_at = now() - interval '1 second' WHERE kind = 'reset' AND used_at IS NULL");
$r = $x->follow($x->get($late));
is($r->{status}, 404, 'an expired link is refused');
like($r->{text}, qr{有効期限（1時間）が過ぎています}, '... saying so and what to do');
like($r->{text}, qr{<a href="/password/forgot">}, '... with the way to ask again');

$t->done;
done_testing;
