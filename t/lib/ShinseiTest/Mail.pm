package ShinseiTest::Mail;

# A real SMTP server on loopback for the tests: Debian's aiosmtpd, with a
# small handler (t/lib/shinsei_smtp_sink.py) that stores every message as
# it came over the wire, one file per message in a Maildir (written to
# tmp/, renamed into new/ before the server answers 250).
#
#   use ShinseiTest::Mail;
#   my $mail = ShinseiTest::Mail->new(dir => $t->{dir});
#   ... shinsei_smtp $mail->url ...            # smtp://127.0.0.1:PORT
#   my ($m) = $mail->wait_for(count => 1, to => 'taro@example.jp');
#   is($m->{subject}, '【葛城市】メールアドレスの確認');
#   like($m->{body}, qr{24時間以内});
#   my ($link) = grep { m{/verify/} } @{ $m->{links} };
#   $mail->stop;  ...  $mail->start;           # same port, same Maildir
#   $mail->clear;
#
# Each message is a hashref (see parse below):
#   subject from from_name to to_list cc_list message_id date date_epoch
#   content_type mime_type charset transfer_encoding
#   body      the text/plain body, decoded (transfer encoding and charset)
#             to a Perl Unicode string, line endings made "\n"
#   html      the text/html part, decoded the same way, if there is one
#   links     the http(s) URLs in body and html, in order, each once
#   parts     for multipart mail: [{ headers, content_type, mime_type,
#             charset, transfer_encoding, filename, body }, ...]
#   headers   { lc name => value } unfolded, undecoded (the first one of
#             a repeated header); header_list [[Name, value], ...] all
#   header_errors  header lines that are not "Name: value"
#   envelope_from, envelope_to (arrayref): the SMTP MAIL FROM and RCPT TO
#   raw       the bytes of DATA as received (dot-unstuffed; CRLF kept)
#   file      the Maildir file

use strict;
use warnings;

use Cwd qw(abs_path);
use Encode ();
use File::Basename qw(basename dirname);
use File::Path qw(make_path);
use File::Temp qw(tempdir);
use IO::Socket::INET;
use MIME::Base64 qw(decode_base64);
use MIME::QuotedPrint qw(decode_qp);
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);
use Time::Local qw(timegm);

use ShinseiTest qw(free_port);

my $LIB = abs_path(dirname(__FILE__) . '/..');
my $PYTHON = '/usr/bin/python3';    # Debian's, which has aiosmtpd

sub new {
    my ($class, %opt) = @_;
    my $dir = $opt{dir}
        // tempdir('shinsei-mail-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $self = bless {
        dir      => $dir,
        maildir  => $opt{maildir} // "$dir/maildir",
        log_file => $opt{log_file} // "$dir/smtp-sink.log",
        port     => $opt{port} // free_port(),
        smtputf8 => $opt{smtputf8} // 0,
        owner    => $$,
    }, $class;
    make_path(map { "$self->{maildir}/$_" } qw(tmp new cur));
    $self->start;
    return $self;
}

sub port    { $_[0]{port} }
sub url     { 'smtp://127.0.0.1:' . $_[0]{port} }
sub maildir { $_[0]{maildir} }
sub log_file { $_[0]{log_file} }
sub running { defined $_[0]{pid} }

# handler(): aiosmtpd's -c arguments, the handler class and its own
sub handler {
    my ($self) = @_;
    return ('shinsei_smtp_sink.MaildirSink', $self->{maildir});
}

sub start {
    my ($self) = @_;
    return $self if $self->{pid};

    my @cmd = ($PYTHON, '-m', 'aiosmtpd', '-n',
               '-l', "127.0.0.1:$self->{port}",
               ($self->{smtputf8} ? '-u' : ()),
               '-c', $self->handler);

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
            # read the greeting, so the server sees a polite client
            my $greeting = <$sock>;
            print $sock "QUIT\r\n";
            close $sock;
            return $self if $greeting && $greeting =~ /^220/;
        }
        if (waitpid($pid, WNOHANG) == $pid) {
            delete $self->{pid};
            die "the SMTP sink exited (status $?): " . _slurp($self->{log_file});
        }
        sleep 0.05;
    }
    $self->stop;
    die "the SMTP sink did not answer on port $self->{port}: "
        . _slurp($self->{log_file});
}

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return $self;
    local ($?, $!);
    kill 'TERM', $pid;
    for (1 .. 200) {
        return $self if waitpid($pid, WNOHANG) == $pid;
        sleep 0.025;
    }
    kill 'KILL', $pid;
    waitpid($pid, 0);
    return $self;
}

sub DESTROY {
    my ($self) = @_;
    local ($?, $!, $@);
    $self->stop if $self->{pid} && $self->{owner} == $$;
}


# --- the stored messages --------------------------------------------------

# files: the message files, oldest first
sub files {
    my ($self) = @_;
    my @f;
    for my $sub (qw(new cur)) {
        opendir(my $dh, "$self->{maildir}/$sub") or next;
        push @f, map { "$self->{maildir}/$sub/$_" }
                 grep { !/^\./ } readdir $dh;
    }
    # SECONDS.M<micros>P<pid>Q<n>... (also Python's mailbox.Maildir names,
    # whose micros are not zero-padded, so compare the numbers)
    my @keyed = map {
        my $n = basename($_);
        my @k = $n =~ /^(\d+)\.M(\d+)P\d+Q(\d+)/ ? ($1, $2, $3)
              : $n =~ /^(\d+)\./                 ? ($1, 0, 0)
              :                                     ((stat $_)[9] // 0, 0, 0);
        [ $_, @k ];
    } @f;
    return map { $_->[0] }
        sort { $a->[1] <=> $b->[1] || $a->[2] <=> $b->[2]
               || $a->[3] <=> $b->[3] || $a->[0] cmp $b->[0] } @keyed;
}

sub count { scalar(my @f = $_[0]->files) }

sub messages {
    my ($self) = @_;
    return map { $self->parse_file($_) } $self->files;
}

# wait_for(count => N, timeout => 10, to => ADDR, match => sub { ... })
# polls until N messages (to ADDR, by envelope or To/Cc, and for which
# match returns true) are stored; returns them, or those there are at the
# timeout. In scalar context: the first of them.
sub wait_for {
    my ($self, %opt) = @_;
    my $count = $opt{count} // 1;
    my $until = time + ($opt{timeout} // 10);
    my @found;
    while (1) {
        @found = grep { $self->_wanted($_, \%opt) } $self->messages;
        last if @found >= $count || time >= $until;
        sleep 0.1;
    }
    return wantarray ? @found : $found[0];
}

sub _wanted {
    my ($self, $m, $opt) = @_;
    if (defined $opt->{to}) {
        my $to = lc $opt->{to};
        return 0 unless grep { lc($_) eq $to } @{ $m->{envelope_to} },
                        @{ $m->{to_list} }, @{ $m->{cc_list} };
    }
    return 0 if $opt->{match} && !$opt->{match}->($m);
    return 1;
}

sub clear {
    my ($self) = @_;
    for my $sub (qw(new cur tmp)) {
        opendir(my $dh, "$self->{maildir}/$sub") or next;
        unlink map { "$self->{maildir}/$sub/$_" } grep { !/^\.\.?$/ } readdir $dh;
    }
    return $self;
}


# --- parsing ----------------------------------------------------------------

sub parse_file {
    my ($self, $file) = @_;
    my $m = parse(_slurp($file));
    $m->{file} = $file;
    return $m;
}

# parse(BYTES): a message as stored by the sink (or any RFC 5322 message)
sub parse {
    my ($bytes) = @_;
    my %m = (envelope_from => undef, envelope_to => []);

    while ($bytes =~ s/\AX-Envelope-(From|To): ([^\r\n]*)\r?\n//) {
        my ($what, $v) = ($1, $2);
        my @a = $v =~ /<([^<>]*)>/g;
        if ($what eq 'From') { $m{envelope_from} = $a[0] // '' }
        else                 { $m{envelope_to} = \@a }
    }
    $m{raw} = $bytes;

    my $part = _parse_entity($bytes);
    my $h = $part->{headers};
    $m{headers} = $h;
    $m{header_list} = $part->{header_list};
    $m{header_errors} = $part->{header_errors};

    $m{subject} = decode_header($h->{subject} // '');
    my ($from) = parse_addresses($h->{from} // '');
    $m{from} = $from ? $from->{address} : '';
    $m{from_name} = $from ? $from->{name} : '';
    $m{to_list} = [ map { $_->{address} } parse_addresses($h->{to} // '') ];
    $m{cc_list} = [ map { $_->{address} } parse_addresses($h->{cc} // '') ];
    $m{to} = join(', ', @{ $m{to_list} });
    ($m{message_id} = $h->{'message-id'} // '') =~ s/^\s+|\s+$//g;
    $m{date} = $h->{date};
    $m{date_epoch} = parse_date($h->{date});
    $m{$_} = $part->{$_}
        for qw(content_type mime_type charset transfer_encoding);

    if ($part->{mime_type} =~ m{^multipart/}) {
        my @leaves = _leaves($part);
        $m{parts} = \@leaves;
        my ($text) = grep { $_->{mime_type} eq 'text/plain'
                            && !defined $_->{filename} } @leaves;
        my ($html) = grep { $_->{mime_type} eq 'text/html' } @leaves;
        $m{body} = $text ? $text->{body} : '';
        $m{html} = $html->{body} if $html;
    } elsif ($part->{mime_type} eq 'text/html') {
        $m{html} = $part->{body};
        $m{body} = '';
    } else {
        $m{body} = $part->{body};
    }

    my @links = find_links($m{body});
    if (defined $m{html}) {
        push @links, map { s/&amp;/&/gr } $m{html} =~ m{(https?://[^\s"'<>]+)}g;
    }
    my %seen;
    $m{links} = [ grep { !$seen{$_}++ } @links ];

    return \%m;
}

# an entity: headers and a body; a multipart one has its parts parsed
sub _parse_entity {
    my ($bytes) = @_;
    my ($head, $body) = $bytes =~ /\A(.*?\r?\n)\r?\n(.*)\z/s;
    ($head, $body) = ($bytes, '') unless defined $head;

    (my $unfolded = $head) =~ s/\r?\n(?=[ \t])//g;
    my (%h, @list, @errors);
    for my $line (split /\r?\n/, $unfolded) {
        if ($line =~ /^([\x21-\x39\x3b-\x7e]+):[ \t]*(.*?)[ \t\r]*$/) {
            push @list, [ $1, $2 ];
            $h{lc $1} //= $2;
        } elsif (length $line) {
            push @errors, $line;
        }
    }

    my %e = (headers => \%h, header_list => \@list, header_errors => \@errors);
    $e{content_type} = $h{'content-type'} // 'text/plain; charset=us-ascii';
    ($e{mime_type}) = map { lc } $e{content_type} =~ m{^\s*([^;\s]+)};
    $e{mime_type} //= 'text/plain';
    $e{charset} = lc(_param($e{content_type}, 'charset') // 'us-ascii');
    $e{transfer_encoding} = lc($h{'content-transfer-encoding'} // '7bit');
    $e{transfer_encoding} =~ s/^\s+|\s+$//g;
    my $disp = $h{'content-disposition'} // '';
    my $fn = _param($disp, 'filename') // _param($e{content_type}, 'name');
    $e{filename} = decode_header($fn) if defined $fn;

    if ($e{mime_type} =~ m{^multipart/}) {
        my $b = _param($e{content_type}, 'boundary') // '';
        $body =~ s/(?:\A|\r?\n)--\Q$b\E--.*\z//s;   # the epilogue
        my @chunks = split /(?:\A|\r?\n)--\Q$b\E(?:--)?[ \t]*(?:\r?\n|\z)/, $body;
        shift @chunks;                      # the preamble
        $e{parts} = [ map { _parse_entity($_) } grep { length } @chunks ];
        $e{body} = '';
        return \%e;
    }

    my $data = $body;
    if ($e{transfer_encoding} eq 'base64') {
        $data = decode_base64($data);
    } elsif ($e{transfer_encoding} eq 'quoted-printable') {
        $data =~ s/\r\n/\n/g;
        $data = decode_qp($data);
    }
    if ($e{mime_type} =~ m{^text/}) {
        my $enc = Encode::find_encoding($e{charset})
               // Encode::find_encoding('UTF-8');
        $enc = Encode::find_encoding('UTF-8')
            if $enc->name =~ /^(?:ascii|utf-?8)/i;  # us-ascii: be lenient
        $data = $enc->decode($data);
        $data =~ s/\r\n/\n/g;
    }
    $e{body} = $data;
    return \%e;
}

sub _leaves {
    my ($e) = @_;
    return $e->{parts} ? map { _leaves($_) } @{ $e->{parts} } : ($e);
}

sub _param {
    my ($value, $name) = @_;
    return $1 if $value =~ /;\s*\Q$name\E\s*=\s*"((?:[^"\\]|\\.)*)"/i;
    return $1 if $value =~ /;\s*\Q$name\E\s*=\s*([^;\s]+)/i;
    return undef;
}

# decode_header(VALUE): RFC 2047 encoded words (B and Q) decoded, with
# Encode's MIME-Header; 8-bit bytes (SMTPUTF8) are taken as UTF-8
sub decode_header {
    my ($v) = @_;
    return '' unless defined $v;
    $v = Encode::decode('UTF-8', $v) if $v =~ /[\x80-\xff]/ && !utf8::is_utf8($v);
    $v =~ s/\r?\n(?=[ \t])//g;
    return Encode::decode('MIME-Header', $v);
}

# parse_addresses(VALUE): [{ address, name }] from an address-list header
sub parse_addresses {
    my ($v) = @_;
    my @out;
    for my $item (_split_list($v)) {
        my ($name, $addr);
        if ($item =~ /^\s*(.*?)\s*<([^<>]*)>\s*$/s) {
            ($name, $addr) = ($1, $2);
        } elsif ($item =~ /^\s*([^\s()]+)\s*(?:\((.*)\))?\s*$/s) {
            ($addr, $name) = ($1, $2 // '');
        } else {
            next;
        }
        if ($name =~ /^"(.*)"$/s) {
            ($name = $1) =~ s/\\(.)/$1/gs;
        }
        push @out, { address => $addr, name => decode_header($name) };
    }
    return @out;
}

sub _split_list {
    my ($v) = @_;
    my (@items, $cur, $quoted, $angle);
    $cur = '';
    for my $c (split //, $v) {
        if ($quoted) {
            $quoted = 0 if $c eq '"' && $cur !~ /\\\z/;
        } elsif ($c eq '"') { $quoted = 1 }
        elsif ($c eq '<')   { $angle = 1 }
        elsif ($c eq '>')   { $angle = 0 }
        elsif ($c eq ',' && !$angle) { push @items, $cur; $cur = ''; next }
        $cur .= $c;
    }
    push @items, $cur;
    return grep { /\S/ } @items;
}

my %MON = (jan => 0, feb => 1, mar => 2, apr => 3, may => 4, jun => 5,
           jul => 6, aug => 7, sep => 8, oct => 9, nov => 10, dec => 11);

# parse_date(RFC 5322 date): seconds since the epoch, or undef
sub parse_date {
    my ($v) = @_;
    return undef unless defined $v;
    my ($d, $mon, $y, $hh, $mm, $ss, $zone) = $v =~
        /(\d{1,2})\s+([A-Za-z]{3})\s+(\d{4})\s+(\d\d):(\d\d)(?::(\d\d))?\s*([+-]\d{4}|[A-Za-z]+)?/
        or return undef;
    defined(my $m = $MON{lc $mon}) or return undef;
    my $t = eval { timegm($ss // 0, $mm, $hh, $d, $m, $y) } // return undef;
    if (defined $zone && $zone =~ /^([+-])(\d\d)(\d\d)$/) {
        my $off = ($2 * 60 + $3) * 60;
        $t -= $1 eq '+' ? $off : -$off;
    }
    return $t;
}

# find_links(TEXT): the http(s) URLs in a text, in order. A URL ends at
# white space, at a character that is not printable ASCII (so Japanese
# text right after it is not part of it) and loses trailing punctuation.
sub find_links {
    my ($text) = @_;
    my @links;
    for my $u (($text // '') =~ m{(https?://[\x21-\x7e]+)}g) {
        $u =~ s/[<>"'`].*//s;
        $u =~ s/[.,;:!?\]]+$//;
        $u =~ s/\)+$// if ($u =~ tr/(//) < ($u =~ tr/)//);
        push @links, $u;
    }
    return @links;
}

sub _slurp {
    my ($file) = @_;
    open(my $fh, '<:raw', $file) or return '';
    local $/;
    return <$fh> // '';
}

1;
