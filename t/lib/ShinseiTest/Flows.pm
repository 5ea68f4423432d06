package ShinseiTest::Flows;

# A resident's usual steps, as the tests take them again and again:
# sign up, follow the verification mail, log in.

use strict;
use warnings;
use utf8;

use Exporter qw(import);
use Test::More;

our @EXPORT = qw(sign_up verify_from_mail signed_up_resident log_in
                 link_path mail_for);

# sign_up($t, $browser, %fields): posts the sign-up form (the address and
# the name: the password is set from the mail's link), returns the response
# (303 to /signup/sent when accepted)
sub sign_up {
    my ($t, $b, %f) = @_;
    $b->get('/signup');
    return $b->submit_form('/signup', {
        name      => $f{name} // '葛城 太郎',
        name_kana => $f{name_kana} // 'カツラギ タロウ',
        email     => $f{email},
    });
}

# mail_for($t, $address, $subject_re): waits for a mail to the address
# whose subject matches
sub mail_for {
    my ($t, $to, $re, %opt) = @_;
    my @m = $t->mail->wait_for(
        count => $opt{count} || 1, to => $to, timeout => $opt{timeout} || 10,
        ($re ? (match => sub { $_[0]{subject} =~ $re }) : ()));
    return wantarray ? @m : $m[-1];
}

# the path and query of a link in a mail, for the test's browser
sub link_path {
    my ($m, $re) = @_;
    my ($link) = grep { $_ =~ $re } @{ $m->{links} || [] };
    return undef unless $link;
    $link =~ s{^https?://[^/]+}{};
    return $link;
}

# verify_from_mail($t, $browser, $address, [$password]): follows the
# verification mail's link (which moves its token into the session and
# comes back without it) and sets the password there
sub verify_from_mail {
    my ($t, $b, $email, $password) = @_;
    my $m = mail_for($t, $email, qr/】メールアドレスの確認$/);
    my $path = link_path($m, qr{/verify\?t=}) or return undef;
    $b->get($path);
    return $b->submit_form('/verify',
                           { password => $password // 'correct horse battery' });
}

sub log_in {
    my ($t, $b, $email, $password) = @_;
    $b->get('/login');
    return $b->submit_form('/login', {
        email => $email, password => $password // 'correct horse battery' });
}

# signed_up_resident($t, email => ...): a verified account; returns a
# browser logged in with it
sub signed_up_resident {
    my ($t, %f) = @_;
    my $b = $t->browser;
    my $r = sign_up($t, $b, %f);
    die "sign-up refused: $r->{status}\n" unless $r->{status} == 303;
    $r = verify_from_mail($t, $b, $f{email}, $f{password});
    die "verification failed\n" unless $r && $r->{status} == 303;
    $r = log_in($t, $b, $f{email}, $f{password});
    die "login failed: $r->{status}\n" unless $r->{status} == 303;
    return $b;
}

1;
