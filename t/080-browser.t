# Accessibility in a real browser: headless Chromium (Debian's) visits the
# pages listed in t/browser/pages.mjs at 1280 and 320 px wide and runs
# axe-core (WCAG 2.0/2.1 A and AA), a reflow check (no sideways scrolling)
# and a keyboard check of the skip link.  One ok() per page, width and
# check; axe's findings are in the diagnostics.
#
# Needs chromium and t/browser/node_modules: t/browser/install.sh installs
# both (./build.sh does).  Missing, they fail this test; they never skip it.
#
#   prove -I t/lib t/080-browser.t
#   A11Y_ONLY=/procedures prove -v -I t/lib t/080-browser.t   # some pages
#   A11Y_SCREENSHOTS=/tmp/shots prove -I t/lib t/080-browser.t # PNGs
#
# The pages behind a login or a mailed link need what only this side can
# make, since it reads the mail: a verified account and the links of the
# mails, passed to node in SHINSEI_A11Y_* (see t/browser/pages.mjs).
use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use ShinseiTest;
use ShinseiTest::Flows;
use ShinseiTest::BrowserTools qw(missing_tools $INSTALL);

binmode(Test::More->builder->$_, ':encoding(UTF-8)')
    for qw(output failure_output todo_output);

my $dir = "$FindBin::Bin/browser";

# --- what the browser tests need ----------------------------------------

my @missing = missing_tools($dir);
if (@missing) {
    fail('the browser tests can run');
    diag("$_") for @missing;
    diag("run $INSTALL");
    done_testing;
    exit;
}

# --- the checks -----------------------------------------------------------

my $t = ShinseiTest->new(mail => 1);

# the account the logged-in pages use, and a link of each kind of mail;
# none of them is followed here, so each page still shows its form
my %account = (SHINSEI_A11Y_EMAIL => 'a11y@example.jp',
               SHINSEI_A11Y_PASSWORD => 'correct horse battery');
my %env = eval {
    my $email = $account{SHINSEI_A11Y_EMAIL};
    my $password = $account{SHINSEI_A11Y_PASSWORD};
    my $b = signed_up_resident($t, email => $email, password => $password);
    my %links = %account;

    $b->get('/mypage/email');
    my $r = $b->submit_form('/mypage/email', {
        email => 'a11y-new@example.jp', current_password => $password });
    die "the change of address was refused: $r->{status}\n"
        unless $r->{status} == 303;
    $links{SHINSEI_A11Y_CONFIRM} = link_path(
        mail_for($t, 'a11y-new@example.jp', qr/新しいメールアドレスの確認/),
        qr{/email/confirm\?t=});

    my $f = $t->browser;
    $f->get('/password/forgot');
    $f->submit_form('/password/forgot', { email => $email });
    $links{SHINSEI_A11Y_RESET} = link_path(
        mail_for($t, $email, qr/パスワードの再発行/),
        qr{/password/reset\?t=});

    my $unverified = 'a11y-unverified@example.jp';
    sign_up($t, $t->browser, email => $unverified);
    $links{SHINSEI_A11Y_VERIFY} = link_path(
        mail_for($t, $unverified, qr/】メールアドレスの確認$/),
        qr{/verify\?t=});

    my @none = grep { !$links{$_} } sort keys %links;
    die "no link in the mail for @none\n" if @none;
    %links;
};
ok(%env, 'an account and the links of its mails for the browser')
    or diag($@);

my @cmd = ('node', "$dir/a11y.mjs", $t->url(''));
push @cmd, '--only', $ENV{A11Y_ONLY} if $ENV{A11Y_ONLY};
push @cmd, '--screenshots', $ENV{A11Y_SCREENSHOTS} if $ENV{A11Y_SCREENSHOTS};

my $errfile = "$t->{dir}/a11y.stderr";
open(my $saved, '>&', \*STDERR) or die "dup STDERR: $!";
open(STDERR, '>', $errfile) or die "$errfile: $!";
my $out;
my $pid = do {
    local @ENV{keys %env} = values %env;
    open($out, '-|', @cmd);
};
open(STDERR, '>&', $saved) or die "restore STDERR: $!";
$pid or BAIL_OUT("cannot run node: $!");

my $json = JSON::PP->new->utf8;
my ($done, $tests) = (undef, 0);
{
    # a11y.mjs stops itself after A11Y_TIMEOUT_MS (240 s); this is the
    # fence if node itself hangs
    local $SIG{ALRM} = sub { diag('a11y.mjs ran over 300 s; killing it');
                             kill 'TERM', $pid };
    alarm 300;
    while (my $line = <$out>) {
        my $m = eval { $json->decode($line) };
        if (!$m) {
            note("a11y.mjs: $line");
        } elsif ($m->{type} eq 'test') {
            $tests++;
            ok($m->{ok}, $m->{name}) or diag($m->{diag} // '');
        } elsif ($m->{type} eq 'note') {
            note($m->{text});
        } elsif ($m->{type} eq 'done') {
            $done = $m;
        }
    }
    alarm 0;
}
close $out;
my $status = $? >> 8;

ok($done && $status == 0 && $tests > 0, 'the browser checks ran to the end')
    or diag("a11y.mjs exited $status after $tests checks:\n"
            . $t->slurp($errfile));

$t->done;
done_testing;
