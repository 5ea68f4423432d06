package ShinseiTest::SlowMail;

# ShinseiTest::Mail whose server stores each message, then waits
# delay_ms before answering 250 (t/lib/shinsei_smtp_slow_sink.py): so
# the module's transfers last long enough to be interrupted, and a sender
# killed during the pause has had its message stored without knowing it.
#
#   my $t = ShinseiTest->new(no_start => 1, workers => 2);
#   my $mail = ShinseiTest::SlowMail->attach($t, delay_ms => 500);
#   $t->start;                         # nginx sends to the slow sink
#   ... $t->mail is $mail; everything else as ShinseiTest::Mail
#   $mail->restart(delay_ms => 1500);  # same port and Maildir, slower
#   $mail->hold;                       # store, but answer nothing ...
#   $mail->release;                    # ... until released
#
# Only the handler class and its arguments differ from ShinseiTest::Mail;
# start, stop, wait_for, messages, parse are inherited.

use strict;
use warnings;

use parent 'ShinseiTest::Mail';

sub new {
    my ($class, %opt) = @_;
    # start() is called by ShinseiTest::Mail::new and needs the delay
    local $ShinseiTest::SlowMail::DELAY = $opt{delay_ms} // 0;
    my $self = $class->SUPER::new(%opt);
    return $self;
}

# attach($t, delay_ms => N): the sink of a ShinseiTest made with
# no_start => 1, before $t->start writes nginx.conf with its URL
sub attach {
    my ($class, $t, %opt) = @_;
    die "attach before \$t->start\n" if $t->{nginx_pid};
    my $self = $class->new(dir => $t->{dir}, %opt);
    $t->{smtp} = $self;
    return $self;
}

our $DELAY;

sub delay_ms { $_[0]{delay_ms} }

# restart(delay_ms => N): the same sink (port, Maildir) with a new delay
sub restart {
    my ($self, %opt) = @_;
    $self->stop;
    $self->{delay_ms} = $opt{delay_ms} if defined $opt{delay_ms};
    return $self->start;
}

# hold: from now on each message is stored and its 250 held back, so
# every transfer in flight stays in flight; release ends that
sub hold_file { "$_[0]{maildir}.hold" }

sub hold {
    my ($self) = @_;
    open(my $fh, '>', $self->hold_file) or die "hold: $!";
    close $fh;
    return $self;
}

sub release {
    my ($self) = @_;
    unlink $self->hold_file;
    return $self;
}

sub handler {
    my ($self) = @_;
    return ('shinsei_smtp_slow_sink.SlowMaildirSink', $self->{maildir},
            $self->{delay_ms});
}

sub start {
    my ($self) = @_;
    return $self if $self->{pid};
    $self->{delay_ms} = $DELAY // $self->{delay_ms} // 0;
    return $self->SUPER::start;
}

1;
