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
for my $label ('氏名', 'フリガナ', 'メールアドレス') {
    like($r->{text}, qr{<label class="form-field__label" for="field-\w+">$label <span class="form-field__required">※必須</span></label>},
         "$label is labelled and marked 必須");
}
unlike($r->{text}, qr{name="password"},
       'finding 4: sign-up asks no password (the owner of the mailbox sets it)');
like($r->{text}, qr{リンクを開き、パスワードを決めると、登録が完了します},
     'and says where the password is chosen');

# --- bad input: a clear message on the same page, what was typed kept ---

sub refused {
    my (%f) = @_;
    my $br = $t->browser;
    $br->get('/signup');
    my %fields = (name => '葛城 太郎', name_kana => 'カツラギ タロウ',
                  email => 'ok@example.jp', %f);
    return $br->submit_form('/signup', \%fields);
}

my @cases = (
    [ 'an empty form', { name => '', name_kana => '', email => '' },
      [ '氏名を入力してください', 'フリガナを入力してください',
        'メールアドレスを入力してください' ] ],
    [ 'a malformed address', { email => 'taro@@example' },
      [ 'メールアドレスを正しい形式で入力してください' ] ],
    [ 'an address without a domain dot', { email => 'taro@localhost' },
      [ 'メールアドレスを正しい形式で入力してください' ] ],
    [ 'an over-long address', { email => ('a' x 64) . '@' . ('b' x 63 . '.') x 3 . 'jp' },
      [ 'メールアドレスは254文字以内で入力してください' ] ],
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
    if (defined $f->{email} && $f->{email} ne '') {
        like($r->{text}, qr{name="email" value="\Q$f->{email}\E"}, '... keeping the address typed');
    } else {
        like($r->{text}, qr{name="name" value="葛城 太郎"}, '... keeping the name typed') if !exists $f->{name};
    }
}

$r = refused(name => '葛城 花子', name_kana => 'かつらぎ はなこ', email => 'x@');
like($r->{text}, qr{name="name_kana" value="カツラギ ハナコ"},
     'フリガナ typed in hiragana is kept, as katakana');
like($r->{text}, qr{aria-describedby="field-email-hint field-email-error" aria-invalid="true"},
     'the message is tied to its field for screen readers');

is($t->psql("SELECT count(*) FROM citizens"), 0, 'no refused form created an account');
is($t->psql("SELECT count(*) FROM outbox"), 0, 'nor queued a mail');

# --- sign-up --------------------------------------------------------------

$r = sign_up($t, $b, email => 'Taro@Example.JP');
is($r->{status}, 303, 'a complete form is accepted');
is($r->{headers}{location}, '/signup/sent', 'and leads to the next step');
$r = $b->follow($r);
like($r->{text}, qr{<h1>確認のメールをお送りしました</h1>}, 'the page says to read the mail');
like($r->{text}, qr{有効期限は24時間}, 'and for how long the link works');

my $m = mail_for($t, 'taro@example.jp', qr/メールアドレスの確認/);
ok($m, 'a verification mail arrives, to the address in lower case');
is($m->{subject}, '【葛城市】メールアドレスの確認', 'its subject names the city');
is($m->{from_name}, '葛城市', 'the sender is the city');
unlike($m->{body}, qr{葛城 太郎|カツラギ},
       'finding 2: it repeats nothing that was typed (no name: the address '
       . 'is not confirmed, anyone could have typed it)');
like($m->{body}, qr{^葛城市 オンライン申請の新規登録で}m, 'it names the city\'s service');
my $path = link_path($m, qr{/verify\?t=[A-Za-z0-9_-]{43}$});
ok($path, 'it holds a verification link');

is($t->psql("SELECT verified_at IS NULL AND password_hash IS NULL FROM citizens"),
   't', 'finding 4: the account waits for its verification, with no password');

# finding 4: whoever signed up cannot log in, with any password
for my $pw ('correct horse battery', '') {
    $r = log_in($t, $t->browser, 'taro@example.jp', $pw);
    is($r->{status}, 422, 'before verification the account cannot log in'
                        . ($pw eq '' ? ' (empty password)' : ''));
}
like($r->{text}, qr{メールアドレスまたはパスワードが正しくありません|パスワードを入力してください},
     '... with the answer of any failed login (no hint that the account exists)');
$r = log_in($t, $t->browser, 'taro@example.jp', 'correct horse battery');
like($r->{text}, qr{メールアドレスまたはパスワードが正しくありません},
     '... the same message as for an unknown address');
sleep 1;
is(scalar(() = $t->mail->wait_for(to => 'taro@example.jp', count => 2,
                                  timeout => 2)), 1,
   '... and no mail goes to the unconfirmed address for those failures');

# --- the link: moved into the session (finding 7) ---------------------------

my $v = $t->browser;
$v->get('/');
$r = $v->get($path);
is($r->{status}, 303, 'finding 7: the link answers with a redirect');
is($r->{headers}{location}, '/verify', '... to the same page without the token');
is($r->{headers}{'referrer-policy'}, 'no-referrer',
   '... with Referrer-Policy: no-referrer');
like($r->{headers}{'cache-control'} // '', qr/no-store/, '... and not stored');
my ($token) = $path =~ /t=([A-Za-z0-9_-]+)/;
is($t->psql("SELECT count(*) FROM sessions WHERE link_kind = 'verify'"
            . " AND link_hash IS NOT NULL"), 1,
   '... the session holds the link (as a hash)');
is($t->psql("SELECT count(*) FROM sessions WHERE link_hash::text LIKE "
            . "'%$token%'"), 0, '... never the token itself');

$r = $v->follow($r);
is($r->{status}, 200, 'the clean page opens');
is($r->{headers}{'referrer-policy'}, 'no-referrer',
   'finding 7: the page a link opened sends no Referer to other sites');
unlike($r->{text}, qr{\Q$token\E}, '... and holds no token anywhere (no hidden field)');
like($r->{text}, qr{<h1>パスワードの設定</h1>}, 'it asks for the password');
like($r->{text}, qr{<label class="form-field__label" for="field-password">パスワード <span class="form-field__required">※必須</span></label>},
     'パスワード is labelled and marked 必須');
like($r->{text}, qr{id="field-password-hint">12文字以上128文字以内},
     'finding 3: the rule (12 characters) is said up front');
like($r->{text}, qr{全角と半角の英数字は同じ文字として扱います},
     'finding 3: and that full- and half-width letters are the same');
like($r->{text}, qr{<button class="button" type="submit">登録を完了する</button>},
     'with a button: opening the link alone (a mail scanner) does not spend it');
is($t->psql("SELECT verified_at IS NULL FROM citizens"), 't',
   'the account is not verified by the GET');

# another browser (no link in its session) gets nothing from /verify
$r = $t->browser->get('/verify');
is($r->{status}, 404, 'finding 7: /verify without the link in the session is refused');
like($r->{text}, qr{このリンクは正しくありません}, '... saying the link is not right');
like($r->{text}, qr{<h1>メールアドレスの確認</h1>}, '... under its own heading');

# --- the password: its rules (finding 3) --------------------------------------

my @bad = (
    [ 'an empty password', '', 'パスワードを入力してください' ],
    [ 'an 11-character password', 'abcdefgh-jk',
      'パスワードは12文字以上で入力してください' ],
    [ '11 full-width characters (counted after NFKC)', 'ａｂｃｄｅｆｇｈ－ｊｋ',
      'パスワードは12文字以上で入力してください' ],
    [ 'a 129-character password', 'x' x 129,
      'パスワードは128文字以内で入力してください' ],
    [ 'a common password', 'password1234', 'よく使われていて推測されやすいパスワードです' ],
    [ 'a common password in capitals', 'PASSWORD1234',
      'よく使われていて推測されやすいパスワードです' ],
    [ 'a common password in full-width letters', 'ｐａｓｓｗｏｒｄ１２３４',
      'よく使われていて推測されやすいパスワードです' ],
    [ 'one character repeated', 'zzzzzzzzzzzz', 'よく使われていて推測されやすいパスワードです' ],
    [ 'a short block repeated', 'kyo-kyo-kyo-', 'よく使われていて推測されやすいパスワードです' ],
    [ 'a run of digits down', '9876543210987', 'よく使われていて推測されやすいパスワードです' ],
    [ 'a run of letters up', 'klmnopqrstuv', 'よく使われていて推測されやすいパスワードです' ],
);
for my $case (@bad) {
    my ($what, $pw, $msg) = @$case;
    $r = $v->submit_form('/verify', { password => $pw });
    is($r->{status}, 422, "$what is refused (422)");
    like($r->{text}, qr{<p class="form-field__error" id="field-password-error">＊$msg},
         "... saying 「$msg」 under the field");
    like($r->{text}, qr{<li><a href="#field-password">$msg}, '... and in the summary at the top');
    like($r->{text}, qr{<title>エラー：パスワードの設定}, '... with エラー in the title');
    like($r->{text}, qr{aria-describedby="field-password-hint field-password-error" aria-invalid="true"},
         '... the message tied to its field for screen readers');
    unlike($r->{text}, qr{value="\Q$pw\E"}, '... never showing the password again')
        if length $pw;
}
is($t->psql("SELECT verified_at IS NULL FROM citizens"), 't',
   'no refused password verified the account');

# --- verification -----------------------------------------------------------

# typed in full-width letters and an ideographic space; NFKC makes it the
# half-width one (finding 3)
$r = $v->submit_form('/verify', { password => 'ｃｏｒｒｅｃｔ　ｈｏｒｓｅ　ｂａｔｔｅｒｙ' });
is($r->{status}, 303, 'the button sets the password and verifies');
is($r->{headers}{location}, '/login?m=verified', 'and leads to the login');
like($v->follow($r)->{text}, qr{登録が完了しました}, 'which says it is done');
is($t->psql("SELECT verified_at IS NOT NULL AND password_hash IS NOT NULL"
            . " FROM citizens"), 't', 'the account is verified, with a password');
$r = $v->get('/verify');
like($r->{text}, qr{このリンクは既に使われています。確認は済んでいますので、<a href="/login">ログイン</a>},
     'going back to the page says the link was used, and where to log in');

$r = log_in($t, $t->browser, 'taro@example.jp', 'correct horse battery');
is($r->{status}, 303, 'finding 3: the password logs in typed in half-width letters');
$r = log_in($t, $t->browser, 'TARO@example.jp', 'ｃｏｒｒｅｃｔ　ｈｏｒｓｅ　ｂａｔｔｅｒｙ');
is($r->{status}, 303, '... and as it was typed, in full-width ones');

$r = $v->get($path);
is($r->{status}, 303, 'the used link, opened again, moves into the session again');
$r = $v->follow($r);
is($r->{status}, 404, 'but is refused');
like($r->{text}, qr{このリンクは既に使われています}, '... saying it was used');

for my $bad ('A' x 43, 'short', 'A' x 42 . '!', 'A' x 44) {
    my $br = $t->browser;
    $br->get('/');
    $r = $br->get("/verify?t=$bad");
    is($r->{status}, 303, "a wrong token ($bad) is moved out of the address too");
    like($br->follow($r)->{text}, qr{このリンクは正しくありません},
         '... and refused');
}

# an expired link
sign_up($t, $t->browser, email => 'late@example.jp');
my $late = link_path(mail_for($t, 'late@example.jp', qr/確認/), qr{/verify\?t=});
$t->psql("UPDATE tokens SET expires_at = now() - interval '1 second'");
my $lb = $t->browser;
$lb->get('/');
$r = $lb->follow($lb->get($late));
like($r->{text}, qr{有効期限（24時間）が過ぎています}, 'an expired link is refused, saying so');
$r = $lb->post('/verify', { password => 'correct horse battery',
                            _csrf => $lb->form('/verify')
                                     ? $lb->form('/verify')->{hidden}{_csrf}
                                     : ($lb->get('/signup'),
                                        $lb->form('/signup')->{hidden}{_csrf})[1] });
is($t->psql("SELECT verified_at IS NULL AND password_hash IS NULL FROM citizens"
            . " WHERE id = (SELECT max(id) FROM citizens)"),
   't', 'and it cannot verify, nor set a password');

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
