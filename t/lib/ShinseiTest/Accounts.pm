package ShinseiTest::Accounts;

# Helpers for tests of citizen accounts and their mail (REQ U-AUTH-1):
# sign-ups through the real form, the outbox as rows, waiting for the
# drainers.
#
#   use ShinseiTest::Accounts qw(sign_up signup_post outbox_rows
#                                wait_outbox_settled parallel_sign_ups);
#   my $m = sign_up($t, 'taro@example.jp');         # the verification mail
#   my $r = signup_post($t, { email => ..., name => "a\r\nb" });
#   my @rows = outbox_rows($t, "status = 'dead'");  # hashrefs
#   wait_outbox_settled($t, timeout => 30);          # nothing pending/sending
#   parallel_sign_ups($t, \@emails, procs => 8);     # forked browsers

use strict;
use warnings;
use utf8;

use Exporter qw(import);
use JSON::PP ();
use POSIX ();
use Time::HiRes qw(sleep time);

our @EXPORT_OK = qw(sign_up signup_post signup_fields outbox_rows
                    outbox_status_counts wait_outbox wait_outbox_settled
                    parallel_sign_ups);

our %DEFAULT = (
    name      => '葛城 太郎',
    name_kana => 'カツラギ タロウ',
);

# signup_fields(email, name): the form's fields (the password is set
# later, from the verification mail's link)
sub signup_fields {
    my ($email, $name) = @_;
    return { %DEFAULT, email => $email,
             (defined $name ? (name => $name) : ()) };
}

# signup_post($t or $browser, {fields}): GET /signup, then posts the form
# (CSRF token included); the response of the POST, not followed
sub signup_post {
    my ($tb, $fields) = @_;
    my $b = $tb->can('browser') ? $tb->browser : $tb;
    $b->get('/signup');
    return $b->submit_form('/signup', { %DEFAULT, %$fields });
}

# sign_up($t, email, [name], [timeout]): signs up through the form and
# returns the verification mail (undef if none came in time)
sub sign_up {
    my ($t, $email, $name, $timeout) = @_;
    my $r = signup_post($t, signup_fields($email, $name));
    die "sign-up of $email answered $r->{status}\n" unless $r->{status} == 303;
    return scalar $t->mail->wait_for(
        count => 1, to => $email, timeout => $timeout // 10,
        match => sub { $_[0]{subject} =~ /メールアドレスの確認/ });
}

# outbox_rows($t, [WHERE]): the rows as hashrefs (column => value), by id
sub outbox_rows {
    my ($t, $where) = @_;
    my $json = $t->psql('SELECT coalesce(json_agg(o ORDER BY o.id), \'[]\')'
                        . ' FROM outbox o' . ($where ? " WHERE $where" : ''));
    return @{ JSON::PP->new->decode($json) };
}

# outbox_status_counts($t): { pending => N, sending => N, ... }
sub outbox_status_counts {
    my ($t) = @_;
    my %n = map { split /\t/ }
            split /\n/, $t->psql('SELECT status, count(*) FROM outbox GROUP BY 1');
    return \%n;
}

# wait_outbox($t, WHERE, timeout => S, notify => 1): polls until the
# condition holds for every row (count of rows not matching is 0); true if
# it did.  notify => 1 also sends NOTIFY shinsei_outbox at each poll, so
# the drainers look for due rows now rather than at their 5 s tick.
sub wait_outbox {
    my ($t, $cond, %opt) = @_;
    my $until = time + ($opt{timeout} // 10);
    my $notify = $opt{notify} ? 'NOTIFY shinsei_outbox; ' : '';
    while (1) {
        my $left = $t->psql("${notify}SELECT count(*) FROM outbox"
                            . " WHERE NOT ($cond)");
        return 1 if $left == 0;
        return 0 if time >= $until;
        sleep($opt{poll} // 0.2);
    }
}

# wait_outbox_settled($t, timeout => S): no row is pending or sending
sub wait_outbox_settled {
    my ($t, %opt) = @_;
    return wait_outbox($t, "status NOT IN ('pending', 'sending')", %opt);
}

# parallel_sign_ups($t, [emails], procs => 8): signs every address up
# through the form, from procs forked browsers at once; returns the number
# of sign-ups answered 303 (each child reports through a pipe)
sub parallel_sign_ups {
    my ($t, $emails, %opt) = @_;
    my $procs = $opt{procs} // 8;
    my @kids;
    for my $k (0 .. $procs - 1) {
        my @mine = @$emails[ grep { $_ % $procs == $k } 0 .. $#$emails ];
        next unless @mine;
        pipe(my $rd, my $wr) or die "pipe: $!";
        my $pid = fork() // die "fork: $!";
        if ($pid == 0) {
            close $rd;
            my $ok = 0;
            for my $email (@mine) {
                my $r = eval { signup_post($t, signup_fields($email)) };
                $ok++ if $r && $r->{status} == 303;
            }
            print $wr "$ok\n";
            close $wr;
            POSIX::_exit(0);     # no destructor of the parent's objects
        }
        close $wr;
        push @kids, [ $pid, $rd ];
    }
    my $ok = 0;
    for my $kid (@kids) {
        my ($pid, $rd) = @$kid;
        my $n = <$rd>;
        close $rd;
        waitpid($pid, 0);
        $ok += $n // 0;
    }
    return $ok;
}

1;
