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
#
# Only start() differs from ShinseiTest::Mail (the handler class and its
# argument); stop, wait_for, messages, parse are inherited.

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use IO::Socket::INET;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);

use parent 'ShinseiTest::Mail';

my $LIB = abs_path(dirname(__FILE__) . '/..');
my $PYTHON = '/usr/bin/python3';

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

sub start {
    my ($self) = @_;
    return $self if $self->{pid};
    $self->{delay_ms} = $DELAY // $self->{delay_ms} // 0;

    my @cmd = ($PYTHON, '-m', 'aiosmtpd', '-n',
               '-l', "127.0.0.1:$self->{port}",
               ($self->{smtputf8} ? '-u' : ()),
               '-c', 'shinsei_smtp_slow_sink.SlowMaildirSink',
               $self->{maildir}, $self->{delay_ms});

    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        $ENV{PYTHONPATH} = join(':', $LIB, $ENV{PYTHONPATH} || ());
        $ENV{PYTHONDONTWRITEBYTECODE} = 1;
        open(STDIN, '<', '/dev/null');
        open(STDOUT, '>>', $self->{log_file});
        open(STDERR, '>&', \*STDOUT);
        exec(@cmd) or POSIX::_exit(127);
    }
    $self->{pid} = $pid;

    my $until = time + 15;
    while (time < $until) {
        my $sock = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$self->{port}",
                                         Timeout => 1);
        if ($sock) {
            my $greeting = <$sock>;
            print $sock "QUIT\r\n";
            close $sock;
            return $self if $greeting && $greeting =~ /^220/;
        }
        if (waitpid($pid, WNOHANG) == $pid) {
            delete $self->{pid};
            die "the slow SMTP sink exited (status $?): "
                . ShinseiTest::Mail::_slurp($self->{log_file});
        }
        sleep 0.05;
    }
    $self->stop;
    die "the slow SMTP sink did not answer on port $self->{port}: "
        . ShinseiTest::Mail::_slurp($self->{log_file});
}

1;
