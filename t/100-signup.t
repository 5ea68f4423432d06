# Sign-up and the verification of the address (REQ U-AUTH-1, S-FORM-3).
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

# --- the form -----------------------------------------------------------

my $b = $t->browser;
my $r = $b->get('/signup');
is($r->{status}, 200, 'the sign-up page answers');
ok($b->cookie('sid'), 'it gives the visitor a session for its form');
like($r->{headers}{'set-cookie'}, qr{^sid=[A-Za-z0-9_-]{43}; Path=/; HttpOnly; SameSite=Lax$},
     'the cookie is HttpOnly and SameSite=Lax (plain http on loopback only)');
like($r->{text}, qr{<input type="hidden" name="_csrf" value="[A-Za-z0-9_-]{43}">},
     'the form carries a CSRF token');
for my $label ('氏名', 'フリガナ', 'メールアドレス', 'パスワード') {
    like($r->{text}, qr{<label class="form-field__label" for="field-\w+">$label <span class="form-field__required">※必須</span></label>},
         "$label is labelled and marked 必須");
}
like($r->{text}, qr{id="field-password-hint">8文字以上128文字以内}, 'the password rule is said up front');

# --- bad input: a clear message on the same page, what was typed kept ---

sub refused {
    my (%f) = @_;
    my $br = $t->browser;
    $br->get('/signup');
    my %fields = (name => '葛城 太郎', name_kana => 'カツラギ タロウ',
                  email => 'ok@example.jp', password => 'correct horse battery', %f);
    return $br->submit_form('/signup', \%fields);
}

my @cases = (
    [ 'an empty form', { name => '', name_kana => '', email => '', password => '' },
      [ '氏名を入力してください', 'フリガナを入力してください',
        'メールアドレスを入力してください', 'パスワードを入力してください' ] ],
    [ 'a malformed address', { email => 'taro@@example' },
      [ 'メールアドレスを正しい形式で入力してください' ] ],
    [ 'an address without a domain dot', { email => 'taro@localhost' },
      [ 'メールアドレスを正しい形式で入力してください' ] ],
    [ 'an over-long address', { email => ('a' x 64) . '@' . ('b' x 63 . '.') x 3 . 'jp' },
      [ 'メールアドレスは254文字以内で入力してください' ] ],
    [ 'a 7-character password', { password => 'abcdefg' },
      [ 'パスワードは8文字以上で入力してください' ] ],
    [ 'a 129-character password', { password => 'x' x 129 },
      [ 'パスワードは128文字以内で入力してください' ] ],
    [ 'a common password', { password => 'password123' },
      [ 'よく使われていて推測されやすいパスワードです' ] ],
    [ 'a common password in capitals', { password => 'PASSWORD123' },
      [ 'よく使われていて推測されやすいパスワードです' ] ],
    [ 'one character repeated', { password => 'zzzzzzzzzz' },
      [ 'よく使われていて推測されやすいパスワードです' ] ],
    [ 'a short block repeated', { password => 'kyo-kyo-kyo-' },
      [ 'よく使われていて推測されやすいパスワードです' ] ],
    [ 'a run of digits down', { password => '98765432' },
      [ 'よく使われていて推測されやすいパスワードです' ] ],
    [ 'a run of letters up', { password => 'klmnopqrs' },
      [ 'よく使われていて推測されやすいパスワードです' ] ],
    [ 'CR/LF in the name', { name => "葛城\r\nBcc: x\@example.jp" },
      [ '氏名に改行は入力できません' ] ],
    [ 'a name over 64 characters', { name => '葛' x 65 },
      [ '氏名は64文字以内で入力してください' ] ],
    [ 'フリガナ in latin letters', { name_kana => 'Katsuragi' },
      [ 'フリガナは全角カタカナで入力してください' ] ],
);

for my $case (@cases) {
    my ($what, $f, $messages) = @$case;
    $r = refused(%$f);
    is($r->{status}, 422, "$what is refused (422)");
    for my $msg (@$messages) {
        like($r->{text}, qr{<p class="form-field__error" id="field-\w+-error">＊$msg},
             "... saying 「$msg」 under the field");
        like($r->{text}, qr{<li><a href="#field-\w+">$msg}, '... and in the summary at the top');
    }
    like($r->{text}, qr{<title>エラー：新規登録}, '... with エラー in the title');
    unlike($r->{text}, qr{value="\Q@{[ $f->{password} // 'correct horse battery' ]}\E"},
           '... never showing the password again');
    if (defined $f->{email} && $f->{email} ne '') {
        like($r->{text}, qr{name="email" value="\Q$f->{email}\E"}, '... keeping the address typed');
    } else {
        like($r->{text}, qr{name="name" value="葛城 太郎"}, '... keeping the name typed') if !exists $f->{name};
    }
}

$r = refused(name => '葛城 花子', name_kana => 'かつらぎ はなこ', password => 'short');
like($r->{text}, qr{name="name_kana" value="カツラギ ハナコ"},
     'フリガナ typed in hiragana is kept, as katakana');
like($r->{text}, qr{aria-describedby="field-password-hint field-password-error" aria-invalid="true"},
     'the message is tied to its field for screen readers');

is($t->psql("SELECT count(*) FROM citizens"), 0, 'no refused form created an account');
is($t->psql("SELECT count(*) FROM outbox"), 0, 'nor queued a mail');

# --- sign-up --------------------------------------------------------------

$r = sign_up($t, $b, email => 'Taro@Example.JP', password => 'ひみつのあいことば');
is($r->{status}, 303, 'a complete form is accepted');
is($r->{headers}{location}, '/signup/sent', 'and leads to the next step');
$r = $b->follow($r);
like($r->{text}, qr{<h1>確認のメールをお送りしました</h1>}, 'the page says to read the mail');
like($r->{text}, qr{有効期限は24時間}, 'and for how long the link works');

my $m = mail_for($t, 'taro@example.jp', qr/メールアドレスの確認/);
ok($m, 'a verification mail arrives, to the address in lower case');
is($m->{subject}, '【葛城市】メールアドレスの確認', 'its subject names the city');
is($m->{from_name}, '葛城市', 'the sender is the city');
like($m->{body}, qr{^葛城 太郎 様}m, 'it greets the resident by name');
my $path = link_path($m, qr{/verify\?t=[A-Za-z0-9_-]{43}$});
ok($path, 'it holds a verification link');

is($t->psql("SELECT verified_at IS NULL FROM citizens"), 't', 'the account waits for its verification');

$r = log_in($t, $t->browser, 'taro@example.jp', 'ひみつのあいことば');
is($r->{status}, 422, 'before verification the account cannot log in');
like($r->{text}, qr{メールアドレスの確認がまだ済んでいません}, '... and says why');
mail_for($t, 'taro@example.jp', qr/メールアドレスの確認/, count => 2);
pass('... and the verification mail is sent again');

# --- verification -----------------------------------------------------------

my $v = $t->browser;
$r = $v->get($path);
is($r->{status}, 200, 'the link opens a page');
like($r->{text}, qr{<button class="button" type="submit">メールアドレスを確認する</button>},
     'with a button: opening the link alone (a mail scanner) does not spend it');
is($t->psql("SELECT verified_at IS NULL FROM citizens"), 't', 'the account is not verified by the GET');
$r = $v->submit_form('/verify', {});
is($r->{status}, 303, 'the button verifies');
is($r->{headers}{location}, '/login?m=verified', 'and leads to the login');
like($v->follow($r)->{text}, qr{メールアドレスを確認しました}, 'which says it is done');
is($t->psql("SELECT verified_at IS NOT NULL FROM citizens"), 't', 'the account is verified');

$r = $v->get($path);
is($r->{status}, 404, 'a used link is refused');
like($r->{text}, qr{このリンクは既に使われています}, '... saying it was used');

$r = $t->browser->get('/verify?t=' . ('A' x 43));
like($r->{text}, qr{このリンクは正しくありません}, 'a wrong token is refused');
$r = $t->browser->get('/verify?t=short');
like($r->{text}, qr{このリンクは正しくありません}, 'a malformed token is refused');

# an expired link
sign_up($t, $t->browser, email => 'late@example.jp');
my $late = link_path(mail_for($t, 'late@example.jp', qr/確認/), qr{/verify\?t=});
$t->psql("UPDATE tokens SET expires_at = now() - interval '1 second'");
$r = $t->browser->get($late);
like($r->{text}, qr{有効期限（24時間）が過ぎています}, 'an expired link is refused, saying so');
my $lb = $t->browser;
$lb->get($late);
$r = $lb->post('/verify', { t => ($late =~ /t=(.*)/)[0], _csrf => 'x' });
is($t->psql("SELECT verified_at IS NULL FROM citizens WHERE id = (SELECT max(id) FROM citizens)"),
   't', 'and it cannot verify');

# --- the same address again: same page, a different mail -------------------

my $again = $t->browser;
$r = sign_up($t, $again, email => 'taro@example.jp', name => '別人 次郎');
is($r->{status}, 303, 'signing up again with a known address gives the same answer');
is($r->{headers}{location}, '/signup/sent', '... the same next page (no account enumeration)');
$m = mail_for($t, 'taro@example.jp', qr/登録済み/);
ok($m, 'the owner of the address is told by mail instead');
like($m->{body}, qr{/password/forgot}, '... with the way to reset the password');
is($t->psql("SELECT count(*) FROM citizens WHERE city = 'katsuragi'"), 2,
   'no second account was made');

$t->done;
done_testing;
