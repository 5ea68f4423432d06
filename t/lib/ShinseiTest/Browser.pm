package ShinseiTest::Browser;

# A client that behaves like a browser for the tests: it keeps cookies
# (dropping Secure ones on plain http, as browsers do), follows nothing by
# itself, and fills forms from the last page it saw, CSRF token included.

use strict;
use warnings;

use Encode qw(decode encode);
use HTTP::Tiny;

sub new {
    my ($class, %opt) = @_;
    my $self = bless { cookies => {}, %opt }, $class;
    $self->{http} = HTTP::Tiny->new(max_redirect => 0, timeout => 30,
                                    agent => 'shinsei-test/1');
    return $self;
}

sub request {
    my ($self, $method, $path, $opt) = @_;
    $opt ||= {};
    my %headers = %{ $opt->{headers} || {} };
    my $cookie = join('; ', map { "$_=$self->{cookies}{$_}" }
                            sort keys %{ $self->{cookies} });
    $headers{cookie} = $cookie if length $cookie && !exists $headers{cookie};

    my $url = $path =~ m{^https?://} ? $path : $self->{base} . $path;
    my $res = $self->{http}->request($method, $url,
                                     { headers => \%headers,
                                       (defined $opt->{content}
                                        ? (content => $opt->{content}) : ()) });
    $self->store_cookies($res);
    $res->{text} = eval { decode('UTF-8', $res->{content} // '',
                                 Encode::FB_CROAK | Encode::LEAVE_SRC) }
                  // '';
    $self->{last} = $res;
    return $res;
}

sub get {
    my ($self, $path, %headers) = @_;
    return $self->request('GET', $path, { headers => \%headers });
}

sub head {
    my ($self, $path) = @_;
    return $self->request('HEAD', $path);
}

# post(PATH, [name => value, ...] or {name => value}, headers...)
sub post {
    my ($self, $path, $fields, %headers) = @_;
    return $self->request('POST', $path, {
        headers => { 'content-type' => 'application/x-www-form-urlencoded',
                     %headers },
        content => urlencode($fields) });
}

sub post_raw {
    my ($self, $path, $type, $content, %headers) = @_;
    return $self->request('POST', $path, {
        headers => { 'content-type' => $type, %headers },
        content => $content });
}

# submit_form(PATH, {fields}): takes the form whose action is PATH from
# the last page (fetching PATH first when the last page has none), keeps
# its hidden inputs (the CSRF token), sets the given fields, and posts.
sub submit_form {
    my ($self, $path, $fields, %opt) = @_;
    my $form = $self->form($path);
    if (!$form) {
        $self->get($opt{from} || $path);
        $form = $self->form($path) or die "no form for $path on the page\n";
    }
    my %values = (%{ $form->{hidden} }, %$fields);
    delete $values{$_} for @{ $opt{without} || [] };
    return $self->post($form->{action}, \%values);
}

# form(ACTION): the form of the last page that posts to ACTION
sub form {
    my ($self, $action) = @_;
    my $html = $self->{last} ? $self->{last}{text} : '';
    while ($html =~ m{<form\b([^>]*)>(.*?)</form>}gs) {
        my ($attrs, $body) = ($1, $2);
        my ($act) = $attrs =~ /action="([^"]*)"/;
        $act = unescape_html($act // '');
        (my $bare = $act) =~ s/\?.*//;
        next unless $act eq $action || $bare eq $action;
        my %hidden;
        while ($body =~ /<input\b([^>]*type="hidden"[^>]*)>/g) {
            my $a = $1;
            my ($n) = $a =~ /name="([^"]*)"/;
            my ($v) = $a =~ /value="([^"]*)"/;
            $hidden{unescape_html($n)} = unescape_html($v // '') if defined $n;
        }
        return { action => $act, hidden => \%hidden, html => $body };
    }
    return undef;
}

sub follow {
    my ($self, $res) = @_;
    $res ||= $self->{last};
    my $loc = $res->{headers}{location} or die "not a redirect\n";
    return $self->get($loc);
}

sub cookie { $_[0]->{cookies}{ $_[1] } }

sub set_cookie {
    my ($self, $name, $value) = @_;
    if (defined $value) { $self->{cookies}{$name} = $value }
    else { delete $self->{cookies}{$name} }
}

sub store_cookies {
    my ($self, $res) = @_;
    my $h = $res->{headers}{'set-cookie'} or return;
    for my $line (ref $h ? @$h : ($h)) {
        my ($pair, @attrs) = split /;\s*/, $line;
        my ($name, $value) = split /=/, $pair, 2;
        # a browser keeps a Secure cookie only from https, and sends it
        # only there
        next if $self->{base} !~ /^https:/ && grep { /^secure$/i } @attrs;
        if (grep { /^max-age=(-?\d+)$/i && $1 <= 0 } @attrs) {
            delete $self->{cookies}{$name};
            next;
        }
        $self->{cookies}{$name} = $value;
    }
}

sub urlencode {
    my ($fields) = @_;
    my @pairs = ref $fields eq 'HASH' ? map { ($_, $fields->{$_}) }
                                        sort keys %$fields
                                      : @$fields;
    my @out;
    while (@pairs) {
        my ($k, $v) = splice(@pairs, 0, 2);
        push @out, escape($k) . '=' . escape($v // '');
    }
    return join('&', @out);
}

sub escape {
    my ($s) = @_;
    $s = encode('UTF-8', $s) if utf8::is_utf8($s);
    $s =~ s/([^A-Za-z0-9\-._~])/sprintf('%%%02X', ord $1)/ge;
    return $s;
}

sub unescape_html {
    my ($s) = @_;
    $s =~ s/&lt;/</g;
    $s =~ s/&gt;/>/g;
    $s =~ s/&quot;/"/g;
    $s =~ s/&#39;/'/g;
    $s =~ s/&amp;/&/g;
    return $s;
}

1;
