# Routing, query strings and request bodies: unknown paths, wrong
# methods, malformed or oversized input, foreign media types, multipart
# forms, CSRF on a refused form, and a fuzz loop that must never crash a
# worker (REQ S-FORM-3, N-SEC-1).
use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Encode qw(decode encode);
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time);
use ShinseiTest;

binmode(Test::More->builder->$_, ':encoding(UTF-8)')
    for qw(output failure_output todo_output);

my $t = ShinseiTest->new;
my @workers = $t->worker_pids;

my %TITLE = (
    400 => 'リクエストの内容に誤りがあります',
    404 => 'ページが見つかりません',
    405 => 'この方法ではご利用になれません',
    413 => '送信されたデータが大きすぎます',
    415 => 'この形式のデータは受け付けられません',
);

# error_page_ok(RESPONSE, STATUS, NAME): the site's Japanese error page
sub error_page_ok {
    my ($r, $status, $name) = @_;
    my $ok = is($r->{status}, $status, "$name: $status");
    $ok &&= like($r->{text}, qr{<h1>\Q$TITLE{$status}\E</h1>},
                 "$name: the Japanese error page ($TITLE{$status})");
    $ok &&= like($r->{text}, qr{site-header__city">葛城市<.*site-footer}s,
                 "$name: in the site layout");
    diag(substr($r->{text} || $r->{content} // '', 0, 600)) unless $ok;
    return $ok;
}

# raw_http(BYTES): sends the bytes on a new connection and reads the
# answer to EOF; returns { status, reason, headers, content, text, raw },
# status undef when no well-formed status line came back
sub raw_http {
    my ($bytes, %opt) = @_;
    my $timeout = $opt{timeout} // 10;
    local $SIG{PIPE} = 'IGNORE';

    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1:' . $t->port,
                                  Timeout => 5)
        or die "connect: $!";
    my $sel = IO::Select->new($s);
    my $until = time + $timeout;

    my $off = 0;
    my $raw = '';
    my $eof = 0;
    $s->blocking(0);

    while (!$eof && time < $until) {
        my @w = $off < length $bytes ? ($s) : ();
        my ($r, $w) = IO::Select->select($sel, @w ? IO::Select->new(@w)
                                                  : undef,
                                         undef, 0.5);
        if ($w && @$w) {
            my $n = syswrite($s, $bytes, 65536, $off);
            if (defined $n) { $off += $n }
            elsif (!$!{EAGAIN}) { $off = length $bytes }    # reset: stop writing
        }
        if ($r && @$r) {
            my $n = sysread($s, my $buf, 65536);
            if (!$n) { $eof = 1 } else { $raw .= $buf }
        }
    }
    close $s;

    my %res = (raw => $raw, headers => {}, content => '');
    if ($raw =~ m{\AHTTP/1\.[01] (\d{3}) ([^\r\n]*)\r\n(.*?)\r\n\r\n(.*)\z}s) {
        @res{qw(status reason content)} = ($1, $2, $4);
        for my $line (split /\r\n/, $3) {
            my ($k, $v) = $line =~ /^([^:]+):\s*(.*)$/ or next;
            $res{headers}{lc $k} = $v;
        }
        $res{header_block} = $3;
    }
    $res{text} = eval { decode('UTF-8', $res{content},
                               Encode::FB_CROAK | Encode::LEAVE_SRC) } // '';
    return \%res;
}

sub request_bytes {
    my ($method, $target, %h) = @_;
    my $body = delete $h{body};
    my $head = "$method $target HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             . "Connection: close\r\n";
    $head .= "$_: $h{$_}\r\n" for sort keys %h;
    $head .= 'Content-Length: ' . length($body) . "\r\n"
        if defined $body && !exists $h{'Transfer-Encoding'};
    return $head . "\r\n" . ($body // '');
}

sub chunked {
    my ($body, $size) = @_;
    return join('', map { sprintf("%x\r\n%s\r\n", length $_, $_) }
                    unpack("(a$size)*", $body)) . "0\r\n\r\n";
}

sub multipart {
    my ($boundary, @parts) = @_;
    my $body = '';
    while (@parts) {
        my ($name, $value) = splice(@parts, 0, 2);
        my $head = ref $name ? $name->[0] : qq{Content-Disposition: form-data; name="$name"};
        $value = encode('UTF-8', $value) if utf8::is_utf8($value);
        $body .= "--$boundary\r\n$head\r\n\r\n$value\r\n";
    }
    return $body . "--$boundary--\r\n";
}

my $b = $t->browser;


# --- routing: 404 and 405 -----------------------------------------------

# the worker has served nothing yet: its city is not loaded
my $first = $b->get('/no/such/page');
is($first->{status}, 404, 'the first request of a fresh worker, to an unknown '
                        . 'path, is 404');
like($first->{text}, qr{site-header__city">葛城市<},
     'and its error page names the city like every other page');
is($b->get('/')->{status}, 200, 'a page loads the city for what follows');

for my $m (qw(GET PUT DELETE OPTIONS)) {
    my $r = $b->request($m, '/no/such/page');
    error_page_ok($r, 404, "$m of an unknown path");
}
error_page_ok($b->post('/no-such-form', { a => 1 }), 404,
              'POST to an unknown path');

my %allow = ('/login' => 'GET, HEAD, POST', '/signup' => 'GET, HEAD, POST',
             '/' => 'GET, HEAD', '/healthz' => 'GET, HEAD',
             '/procedures/koseki' => 'GET, HEAD');
for my $path (sort keys %allow) {
    for my $m (qw(PUT DELETE OPTIONS PATCH), $allow{$path} =~ /POST/ ? () : 'POST') {
        my $r = $m eq 'POST' ? $b->post($path, { a => 1 })
                             : $b->request($m, $path);
        error_page_ok($r, 405, "$m $path") or next;
        is($r->{headers}{allow}, $allow{$path},
           "$m $path: Allow lists $allow{$path}");
    }
}

my $r = raw_http(request_bytes('FROBNICATE', '/login'));
is($r->{status}, 405, 'an unknown method on a known path is 405');
is($r->{headers}{allow}, 'GET, HEAD, POST', 'with Allow');

for my $m (qw(TRACE CONNECT)) {
    # nginx refuses these itself, before the module routes the request
    $r = raw_http(request_bytes($m, '/login'));
    is($r->{status}, 405, "$m (refused by nginx itself) is 405");
    my $title = $TITLE{405};
    like($r->{text}, qr{<h1>\Q$title\E</h1>}, "$m: the Japanese error page");
    ok($r->{headers}{allow}, "$m: the 405 carries Allow (RFC 9110 15.5.6)");
}

$r = $b->head('/login');
is($r->{status}, 200, 'HEAD /login is allowed (200)');
is($b->get('/login')->{status}, 200, 'GET /login is 200');


# --- query strings ------------------------------------------------------

my %bad_query = (
    '%zz'              => 'a percent sign without hex digits',
    'a=%zz'            => 'invalid percent-encoding in a value',
    'a=%4'             => 'a truncated percent escape',
    'a=%'              => 'a lone percent sign',
    'a=%E3%81'         => 'truncated UTF-8 (2 of 3 bytes)',
    '%E3%81=1'         => 'truncated UTF-8 in a name',
    'a=%C0%AF'         => 'an overlong encoding of "/"',
    'a=%E0%80%AF'      => 'a 3-byte overlong',
    'a=%ED%A0%80'      => 'a UTF-16 surrogate (U+D800)',
    'a=%F4%90%80%80'   => 'a code point above U+10FFFF',
    'a=%FF'            => 'a byte never valid in UTF-8',
    'a=%00'            => 'NUL',
    'a=%01'            => 'a C0 control',
    'a=%7F'            => 'DEL',
    "a=\xe3\x81"       => 'raw truncated UTF-8 bytes',
);
for my $q (sort keys %bad_query) {
    (my $shown = $q) =~ s/([^\x21-\x7e])/sprintf('\\x%02X', ord $1)/ge;
    my $res = raw_http(request_bytes('GET', "/login?$q"));
    error_page_ok($res, 400, "GET /login?$shown ($bad_query{$q})");
}
for my $q ('a=%E3%81%82', 'a=%09b', 'a=x%0D%0Ay', 'a=%F0%9F%98%80', 'a=+b&&c=') {
    is($b->get("/login?$q")->{status}, 200, "GET /login?$q (valid) is 200");
}


# --- urlencoded POST bodies ---------------------------------------------

$b->get('/login');
my $csrf = $b->form('/login')->{hidden}{_csrf};
ok($csrf, 'GET /login gives a session and a CSRF token');

my $form = sub {
    my (%f) = @_;
    return join '&', '_csrf=' . $csrf, map { "$_=$f{$_}" } sort keys %f;
};
my $urlenc = 'application/x-www-form-urlencoded';

$r = $b->post_raw('/login', $urlenc,
                  $form->(email => 'nobody%40example.jp', password => 'wrong-pass-1'));
is($r->{status}, 422, 'a well-formed login for an unknown address is 422');
like($r->{text}, qr{メールアドレスまたはパスワードが正しくありません},
     'with the login failure message');

my %bad_body = (
    'email=%zz'                  => 'invalid percent-encoding',
    'email=%4'                   => 'a truncated percent escape',
    'em%ail=x'                   => 'invalid percent-encoding in a name',
    'email=%E3%81'               => 'truncated UTF-8',
    'email=%C0%AF'               => 'an overlong',
    'email=%ED%A0%80'            => 'a surrogate',
    'email=%00'                  => 'NUL',
    'email=%1B'                  => 'ESC, a C0 control',
    "email=\xff\xfe"             => 'raw bytes that are not UTF-8',
    "email=\xc0\xaf"             => 'a raw overlong',
    "%ED%BF%BF=1"                => 'a surrogate in a name',
);
for my $body (sort keys %bad_body) {
    (my $shown = $body) =~ s/([^\x21-\x7e])/sprintf('\\x%02X', ord $1)/ge;
    $r = $b->post_raw('/login', $urlenc, "_csrf=$csrf&$body&password=x");
    error_page_ok($r, 400, "POST /login $shown ($bad_body{$body})");
}


# --- sizes --------------------------------------------------------------

my $limit = 64 * 1024;
my $pad = sub { my ($n, $head) = @_; $head . ('x' x ($n - length $head)) };

$r = $b->post_raw('/login', $urlenc,
                  $pad->($limit, $form->(email => 'a%40example.jp', password => 'p') . '&pad='));
is($r->{status}, 422, 'a body of exactly shinsei_body_limit (64k) is read and '
                    . 'checked (422)');

$r = $b->post_raw('/login', $urlenc,
                  $pad->($limit + 1, $form->(email => 'a%40example.jp') . '&pad='));
error_page_ok($r, 413, 'a body one byte over the limit');

$r = raw_http(request_bytes('POST', '/login', 'Content-Type' => $urlenc,
                            'Content-Length' => 70000));
error_page_ok($r, 413, 'a Content-Length over the limit, refused before the '
                     . 'body is sent');

$r = raw_http(request_bytes('POST', '/login', 'Content-Type' => $urlenc,
                            'Transfer-Encoding' => 'chunked',
                            body => chunked($pad->(100_000, 'a='), 8000)));
error_page_ok($r, 413, 'a chunked body over the limit (100k)');

$r = raw_http(request_bytes('POST', '/login', 'Content-Type' => $urlenc,
                            'Transfer-Encoding' => 'chunked',
                            'Cookie' => "sid=" . $b->cookie('sid'),
                            body => chunked($form->(email => 'a%40example.jp',
                                                    password => 'pw-123456'),
                                            7)));
is($r->{status}, 422, 'a small chunked body in many chunks is read like any other');
like($r->{text}, qr{メールアドレスまたはパスワードが正しくありません},
     'and checked as a login');

my $log_before = length $t->error_log;
$r = raw_http(request_bytes('POST', '/login', 'Content-Type' => $urlenc,
                            'Content-Length' => 2_000_000));
error_page_ok($r, 413, 'a Content-Length over client_max_body_size (nginx\'s own 413)');
like(substr($t->error_log, $log_before), qr{client intended to send too large body},
     'that 413 was nginx\'s own (client_max_body_size), shown through /_error');

$r = $b->post_raw('/login', $urlenc, 'a=' . ('x' x 1_100_000));
error_page_ok($r, 413, 'a real 1.1 MB body');

$log_before = length $t->error_log;
$r = raw_http(request_bytes('POST', '/login', 'Content-Type' => $urlenc,
                            'Transfer-Encoding' => 'chunked',
                            body => chunked($pad->(1_100_000, 'a='), 16000)));
error_page_ok($r, 413, 'a chunked body over client_max_body_size');
like(substr($t->error_log, $log_before), qr{too large chunked body},
     'refused by nginx while the module read it');

# a refused body is read and dropped: the connection serves the next
# request (keep-alive, pipelined)
my $next = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
for my $case (
    ['a body over the limit', "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: $urlenc\r\n"
        . "Content-Length: 70000\r\n\r\n" . ('x' x 70000), 413],
    ['a chunked body over the limit', "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: $urlenc\r\n"
        . "Transfer-Encoding: chunked\r\n\r\n" . chunked('a=' . ('x' x 80000), 8000), 413],
    ['a malformed body', "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: $urlenc\r\n"
        . "Content-Length: 6\r\n\r\na=%zz&", 400],
    ['a body of a foreign type', "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
        . "Content-Length: 3\r\n\r\nabc", 415],
    ['a body sent with a wrong method', "PUT /login HTTP/1.1\r\nHost: x\r\n"
        . "Content-Length: 3\r\n\r\nabc", 405]) {
    my ($name, $bytes, $status) = @$case;
    my $res = raw_http($bytes . $next);
    my @st = $res->{raw} =~ m{^HTTP/1\.1 (\d{3}) }mg;
    is("@st", "$status 200", "after $name ($status), the same connection "
                            . 'answers the next request');
}

# field counts and name lengths
$r = $b->post_raw('/login', $urlenc, join('&', "_csrf=$csrf", map { "f$_=1" } 2 .. 256));
is($r->{status}, 422, '256 fields are accepted (and checked: 422)');
$r = $b->post_raw('/login', $urlenc, join('&', "_csrf=$csrf", map { "f$_=1" } 2 .. 257));
error_page_ok($r, 413, '257 fields');
$r = $b->get('/login?' . join('&', map { "q$_=1" } 1 .. 257));
error_page_ok($r, 413, '257 query parameters');
$r = $b->post_raw('/login', $urlenc, "_csrf=$csrf&" . ('n' x 128) . '=1');
is($r->{status}, 422, 'a field name of 128 bytes is accepted');
$r = $b->post_raw('/login', $urlenc, "_csrf=$csrf&" . ('n' x 129) . '=1');
error_page_ok($r, 400, 'a field name of 129 bytes');


# --- media types --------------------------------------------------------

for my $type ('text/plain', 'application/json', 'application/xml',
              'multipart/mixed; boundary=x', 'application/x-www-form-urlencodedx',
              'text/plain; charset=utf-8') {
    $r = $b->post_raw('/login', $type, $type =~ /json/ ? '{"email":"a"}' : "_csrf=$csrf&email=a");
    error_page_ok($r, 415, "POST /login as $type");
}
$r = raw_http(request_bytes('POST', '/login', body => "_csrf=$csrf&email=a"));
error_page_ok($r, 415, 'a body without Content-Type');
$r = $b->post_raw('/login', 'APPLICATION/X-WWW-FORM-URLENCODED; charset=UTF-8',
                  $form->(email => 'x%40example.jp', password => 'pw-1234567'));
is($r->{status}, 422, 'the urlencoded type is matched without regard to case, '
                    . 'with parameters');


# --- multipart/form-data ------------------------------------------------

my $bd = '----shinseiBoundary7MA4YWxkTrZu0gW';
my $mp = sub { "multipart/form-data; boundary=$_[0]" };

# sign up through multipart, with Japanese text, and log in through it
my $signup = $t->browser;
$signup->get('/signup');
my $stoken = $signup->form('/signup')->{hidden}{_csrf};
$r = $signup->post_raw('/signup', $mp->($bd), multipart($bd,
    _csrf => $stoken, name => '葛城 花子', name_kana => 'カツラギ ハナコ',
    email => 'hanako@example.jp', password => 'Mp-sign-up-2024!'));
is($r->{status}, 303, 'a multipart sign-up is accepted (303)');
is($r->{headers}{location}, '/signup/sent', 'to the sent page');
is($t->psql("SELECT count(*) FROM citizens"), 1, 'one citizen is created');
$t->psql("UPDATE citizens SET verified_at = now()");

my $mb = $t->browser;
$mb->get('/login');
my $mtoken = $mb->form('/login')->{hidden}{_csrf};
$r = $mb->post_raw('/login', $mp->($bd), multipart($bd,
    _csrf => $mtoken, email => 'hanako@example.jp', password => 'wrong-password'));
is($r->{status}, 422, 'a multipart login with a wrong password is 422');
like($r->{text}, qr{メールアドレスまたはパスワードが正しくありません},
     'with the same message as an urlencoded one');
like($r->{text}, qr{name="email" value="hanako\@example.jp"}, 'the address is kept');
unlike($r->{text}, qr{wrong-password}, 'the password is not echoed');

$r = $mb->post_raw('/login', $mp->($bd), multipart($bd,
    _csrf => $mtoken, email => 'hanako@example.jp', password => 'Mp-sign-up-2024!'));
is($r->{status}, 303, 'a multipart login with the right password succeeds (303)');
is($r->{headers}{location}, '/mypage', 'to /mypage');
like($mb->get('/mypage')->{text}, qr{葛城 花子 さん},
     'the name posted as multipart UTF-8 comes back intact');

my $ub = $t->browser;
$r = $ub->submit_form('/login', { email => 'hanako@example.jp',
                                  password => 'Mp-sign-up-2024!' });
is($r->{status}, 303, 'the same account logs in through an urlencoded form');

# boundary and parameter variants
my $fresh = sub {
    my $br = $t->browser;
    $br->get('/login');
    return ($br, $br->form('/login')->{hidden}{_csrf});
};
my ($vb, $vtok) = $fresh->();
my @login = (_csrf => $vtok, email => 'hanako@example.jp',
             password => 'wrong-password');

my $q = q{b'()+_,-./:=? end};
$r = $vb->post_raw('/login', qq{multipart/form-data; boundary="$q"}, multipart($q, @login));
is($r->{status}, 422, 'a quoted boundary with spaces and RFC 2046 bchars works');
like($r->{text}, qr{正しくありません}, 'and the form is checked');

$r = $vb->post_raw('/login', qq{Multipart/Form-Data;charset=utf-8;boundary=$bd},
                   "preamble text\r\n" . multipart($bd, @login) . "epilogue\r\n");
is($r->{status}, 422, 'boundary after another parameter, no spaces, '
                    . 'a preamble and an epilogue');
like($r->{text}, qr{正しくありません}, 'are parsed');

$r = $vb->post_raw('/login', $mp->($bd), multipart($bd,
    [encode('UTF-8', 'content-disposition: form-data; filename="写真 1.jpg"; '
                     . 'name="photo"') . "\r\nContent-Type: image/jpeg"] => "\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01",
    ['Content-Disposition: form-data; name="email"'
     . "\r\nContent-Type: text/plain; charset=UTF-8"] => 'hanako@example.jp',
    _csrf => $vtok, password => 'wrong-password'));
is($r->{status}, 422, 'a file part (filename, binary content) and part headers '
                    . 'in any case are accepted');
like($r->{text}, qr{正しくありません}, 'and the text fields are still read');

my $b70 = 'b' x 70;
$r = $vb->post_raw('/login', $mp->($b70), multipart($b70, @login));
is($r->{status}, 422, 'a boundary of 70 characters (the maximum) works');

my %bad_mp = (
    'no closing boundary' =>
        [$mp->($bd), "--$bd\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n"],
    'a delimiter without the closing "--"' =>
        [$mp->($bd), "--$bd\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--$bd"],
    'no delimiter at all' => [$mp->($bd), "just some text"],
    'an empty body' => [$mp->($bd), ''],
    'a part without headers' => [$mp->($bd), "--$bd\r\n\r\nx\r\n--$bd--\r\n"],
    'a part without Content-Disposition' =>
        [$mp->($bd), "--$bd\r\nContent-Type: text/plain\r\n\r\nx\r\n--$bd--\r\n"],
    'a part whose disposition is not form-data' =>
        [$mp->($bd), "--$bd\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nx\r\n--$bd--\r\n"],
    'a part without a name' =>
        [$mp->($bd), "--$bd\r\nContent-Disposition: form-data\r\n\r\nx\r\n--$bd--\r\n"],
    'a header line without a colon' =>
        [$mp->($bd), "--$bd\r\nContent-Disposition form-data; name=a\r\n\r\nx\r\n--$bd--\r\n"],
    'headers not ended by an empty line' =>
        [$mp->($bd), "--$bd\r\nContent-Disposition: form-data; name=a\r\nx\r\n--$bd--\r\n"],
    'an unterminated quoted name' =>
        [$mp->($bd), "--$bd\r\nContent-Disposition: form-data; name=\"a\r\n\r\nx\r\n--$bd--\r\n"],
    'a boundary of 71 characters' =>
        [$mp->('b' x 71), multipart('b' x 71, a => 1)],
    'no boundary parameter' => ['multipart/form-data', multipart($bd, a => 1)],
    'an empty boundary' => ['multipart/form-data; boundary=', multipart('', a => 1)],
    'an unterminated quoted boundary' =>
        [qq{multipart/form-data; boundary="$bd}, multipart($bd, a => 1)],
    'a text part that is not UTF-8' =>
        [$mp->($bd), multipart($bd, email => "\xc0\xaf")],
    'a text part with NUL' => [$mp->($bd), multipart($bd, email => "a\0b")],
    'a part name of 129 bytes' => [$mp->($bd), multipart($bd, ('n' x 129) => 1)],
);
for my $name (sort keys %bad_mp) {
    my ($type, $body) = @{ $bad_mp{$name} };
    error_page_ok($vb->post_raw('/login', $type, $body), 400, "multipart: $name");
}
error_page_ok($vb->post_raw('/login', $mp->($bd),
                            multipart($bd, map { ("f$_" => 1) } 1 .. 257)),
              413, 'multipart: 257 parts');


# --- nginx's own refusals of the request line --------------------------

for my $case (["\x01\x02\xff garbage\r\n\r\n", 'a garbage request line'],
              ["GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 'HTTP/1.1 without Host'],
              ["GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 'a control byte in the path'],
              ["GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n", 'a header line without a colon'],
              ["POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
               . "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 'Content-Length with chunked']) {
    my ($bytes, $name) = @$case;
    error_page_ok(raw_http($bytes), 400, $name);
}

for my $case (['GET /' . ('a' x 9000) . " HTTP/1.1\r\nHost: x\r\n\r\n",
               'a request line over large_client_header_buffers (414)'],
              ["GET / HTTP/1.1\r\nHost: x\r\nX-Long: " . ('a' x 9000) . "\r\n\r\n",
               'a header over large_client_header_buffers (494, sent as 400)'],
              ["GET / HTTP/2.5\r\nHost: x\r\n\r\n", 'an unknown HTTP version (505)'],
              ["POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
               'an unknown Transfer-Encoding (501)']) {
    my ($bytes, $name) = @$case;
    my $res = raw_http($bytes);
    like($res->{text}, qr{<h1>[^<]*(?:誤り|大きすぎ|ご利用|エラー)[^<]*</h1>},
         "$name: a Japanese error page (got $res->{status} "
         . join(' ', $res->{content} =~ m{<title>(.*?)</title>}) . ')');
}


# --- a refused form: validation (S-FORM-3) -----------------------------

my $vr = $t->browser;
$r = $vr->submit_form('/signup', { name => '葛城 太郎', name_kana => 'katsuragi',
                                   email => 'not-an-address',
                                   password => 'short' });
is($r->{status}, 422, 'a sign-up with invalid fields is refused with 422');
like($r->{text}, qr{<title>エラー：新規登録 }, 'the title says there are errors');
my ($summary) = $r->{text} =~ m{<div class="error-summary"[^>]*>(.*?)</div>}s;
ok($summary, 'an error summary is at the top');
for my $f (qw(name_kana email password)) {
    like($summary // '', qr{<a href="#field-$f">[^<]+</a>},
         "the summary links to the $f field");
    like($r->{text}, qr{<p class="form-field__error" id="field-$f-error">＊[^<]+</p>},
         "a message is next to the $f field");
    like($r->{text}, qr{<input[^>]*id="field-$f"[^>]*aria-describedby="[^"]*\bfield-$f-error\b[^"]*"[^>]*aria-invalid="true"},
         "the $f input points to its message (aria-describedby) and is aria-invalid");
}
unlike($r->{text}, qr{<input[^>]*id="field-name"[^>]*aria-invalid},
       'the valid name field is not marked invalid');
like($r->{text}, qr{name="name" value="葛城 太郎"}, 'what was typed is kept (name)');
like($r->{text}, qr{name="name_kana" value="katsuragi"}, '(kana, as typed)');
like($r->{text}, qr{name="email" value="not-an-address"}, '(address, as typed)');
unlike($r->{text}, qr{value="short"}, 'but not the password');


# --- CSRF on a refused form (sign-up) -----------------------------------

my $citizens = $t->psql("SELECT count(*) FROM citizens");
my $mails = $t->psql("SELECT count(*) FROM outbox");
my %typed = (name => '葛城 次郎', name_kana => 'カツラギ ジロウ',
             email => 'jiro@example.jp', password => 'Csrf-test-pass-9');

sub refused_ok {
    my ($r, $name) = @_;
    is($r->{status}, 422, "$name: 422");
    like($r->{text}, qr{<h2 class="notice__title">もう一度送信してください</h2>},
         "$name: the notice asks to send again");
    like($r->{text}, qr{<form[^>]*action="/signup"}, "$name: the form is shown again");
    like($r->{text}, qr{name="name" value="葛城 次郎"}, "$name: the typed name is kept");
    like($r->{text}, qr{name="name_kana" value="カツラギ ジロウ"},
         "$name: the typed kana is kept");
    like($r->{text}, qr{name="email" value="jiro\@example.jp"},
         "$name: the typed address is kept");
    unlike($r->{text}, qr{Csrf-test-pass-9}, "$name: the password is not echoed");
    like($r->{text}, qr{<input[^>]*name="password"(?![^>]*value=)[^>]*>},
         "$name: the password field is empty");
}

my $alice = $t->browser;
my $bob = $t->browser;
$alice->get('/signup');
$bob->get('/signup');
my $bob_token = $bob->form('/signup')->{hidden}{_csrf};
isnt($alice->form('/signup')->{hidden}{_csrf}, $bob_token,
     'two browsers have different CSRF tokens');

refused_ok($alice->submit_form('/signup', \%typed, without => ['_csrf']),
           'sign-up without _csrf');
$alice->get('/signup');
refused_ok($alice->submit_form('/signup', { %typed, _csrf => $bob_token }),
           'sign-up with the token of another session');

my $nocookie = $t->browser;
$r = $nocookie->post('/signup', { %typed, _csrf => $bob_token });
refused_ok($r, 'sign-up with no cookie at all');
ok($nocookie->cookie('sid'), 'that answer starts a session');

is($t->psql("SELECT count(*) FROM citizens"), $citizens,
   'no refused sign-up created a citizen');
is($t->psql("SELECT count(*) FROM outbox"), $mails, 'and queued no mail');

$r = $nocookie->submit_form('/signup', \%typed);
is($r->{status}, 303, 'sending again from the refused page (its fresh token, '
                    . 'the kept values) succeeds');
is($t->psql("SELECT count(*) FROM citizens"), $citizens + 1,
   'and creates the citizen');


# --- fuzz ----------------------------------------------------------------

my $seed = $ENV{SHINSEI_FUZZ_SEED} // 20261126;
my $rounds = $ENV{SHINSEI_FUZZ_ROUNDS} // ($ENV{SHINSEI_ASAN} ? 2000 : 3000);
diag("fuzz: seed $seed, $rounds requests (replay with SHINSEI_FUZZ_SEED=$seed "
     . "SHINSEI_FUZZ_ROUNDS=$rounds)");
srand($seed);

my @sessions;
for (1 .. 3) {
    my $br = $t->browser;
    $br->get('/signup');
    push @sessions, [ $br->cookie('sid'), $br->form('/signup')->{hidden}{_csrf} ];
}

my @dict = ('%', '%z', '%zz', '%E3%81', '%C0%AF', '%ED%A0%80', '%00', '%FF',
            '%F4%90%80%80', '&', '=', '&&', '==', '+', '%2B', '%26', '%3D',
            "\r\n", "\r\n\r\n", '--', ';', '"', "'", '\\', "\x00", "\xff",
            "\xc0\xaf", "\xe3\x81", "\xed\xa0\x80", 'name=', 'filename="x"',
            'Content-Disposition: form-data; name="', '_csrf=', 'email=',
            'password=', '@', '%40', "\xe3\x80\x80", "\xe3\x82\xa2", ('A' x 130), ('%41' x 50));
my @types = ($urlenc, "$urlenc; charset=utf-8", 'multipart/form-data',
             'multipart/form-data; boundary=', 'multipart/form-data; boundary="',
             'text/plain', 'application/json', '', ';', 'multipart/form-data; boundary=x; boundary=y',
             'application/x-www-form-urlencoded;', 'MULTIPART/FORM-DATA; BOUNDARY=Q');
my @paths = ('/login', '/signup', '/login', '/signup', '/verify', '/logout',
             '/signup/sent', '/', '/healthz', '/nope');
my @methods = qw(GET POST POST POST HEAD PUT DELETE OPTIONS PATCH);

sub rnd { int rand $_[0] }
sub pick { $_[rnd(scalar @_)] }
sub rbytes {
    my ($n, $lo, $hi) = @_;
    ($lo, $hi) = (0, 255) unless defined $lo;
    return join '', map { chr($lo + rnd($hi - $lo + 1)) } 1 .. $n;
}

sub mutate {
    my ($s) = @_;
    for (1 .. 1 + rnd(4)) {
        my $len = length $s;
        my $pos = rnd($len + 1);
        my $op = rnd(7);
        if ($op == 0 && $len) {
            substr($s, rnd($len), 1) = chr rnd 256;
        } elsif ($op == 1) {
            substr($s, $pos, 0) = rbytes(1 + rnd(8));
        } elsif ($op == 2) {
            substr($s, $pos, 0) = pick(@dict);
        } elsif ($op == 3 && $len) {
            substr($s, $pos, rnd(20)) = '' if $pos < $len;
        } elsif ($op == 4 && $len) {
            my $from = rnd($len);
            substr($s, $pos, 0) = substr($s, $from, 1 + rnd(40));
        } elsif ($op == 5) {
            $s = substr($s, 0, $pos);
        } else {
            substr($s, $pos, 0) = '%' . sprintf('%02X', rnd 256);
        }
    }
    return $s;
}

sub template_body {
    my ($path, $token, $multipart) = @_;
    my @f = $path eq '/signup'
        ? (_csrf => $token, name => '葛城 三郎', name_kana => 'カツラギ サブロウ',
           email => 'saburo' . rnd(5) . '@example.jp', password => 'Fuzz-pass-' . rnd(1000))
        : (_csrf => $token, email => 'saburo' . rnd(5) . '@example.jp',
           password => 'Fuzz-pass-' . rnd(1000));
    return multipart($bd, @f) if $multipart;
    return ShinseiTest::Browser::urlencode(\@f);
}

my %allowed = map { $_ => 1 } qw(200 303 400 403 404 405 413 415 422);
my (%seen, @failures);
my $t0 = time;

for my $i (1 .. $rounds) {
    my $kind = rnd(100);
    my ($method, $target, %h) = ('POST', pick('/login', '/signup'));
    my $sess = pick(@sessions);
    $h{Cookie} = "sid=$sess->[0]" if rnd(4);

    if ($kind < 40) {
        # a valid form, mutated
        my $multi = rnd(3) == 0;
        my $body = template_body($target, $sess->[1], $multi);
        $body = mutate($body) if rnd(10);
        $h{'Content-Type'} = $multi ? $mp->($bd) : $urlenc;
        $h{'Content-Type'} = mutate($h{'Content-Type'}) if rnd(8) == 0;
        $h{body} = $body;
        if (rnd(10) == 0) {
            $h{'Transfer-Encoding'} = 'chunked';
            $h{body} = chunked($body, 1 + rnd(100));
        }
    } elsif ($kind < 55) {
        # random bytes, now and then large
        my $n = rnd(10) ? rnd(2000) : 60_000 + rnd(40_000);
        $h{body} = rnd(2) ? rbytes($n) : rbytes($n, 0x20, 0x7e);
        $h{'Content-Type'} = pick(@types);
        delete $h{'Content-Type'} if $h{'Content-Type'} eq '';
    } elsif ($kind < 80) {
        # query strings
        ($method, $target) = (pick('GET', 'GET', 'HEAD', 'POST'), pick(@paths));
        my $qs = rnd(2) ? mutate('next=%2Fmypage&m=verified&expired=1&t='
                                 . rbytes(43, 0x61, 0x7a))
                        : rbytes(rnd(300), 0x21, 0xff);
        $qs =~ s/([\x00-\x20#\x7f])/sprintf('%%%02X', ord $1)/ge;
        $target .= "?$qs";
        if ($method eq 'POST') {
            $h{'Content-Type'} = $urlenc;
            $h{body} = template_body($target =~ s/\?.*//r, $sess->[1], 0);
        }
    } else {
        # headers and methods
        $method = pick(@methods);
        $target = rnd(5) ? pick(@paths) : mutate(pick(@paths));
        $target =~ s/([\x00-\x20#\x7f])/sprintf('%%%02X', ord $1)/ge;
        $target = "/$target" unless $target =~ m{^/};
        $h{'Content-Type'} = mutate(pick(@types, $urlenc, $mp->($bd)));
        $h{Cookie} = rnd(2) ? 'sid=' . mutate($sess->[0])
                            : 'sid=' . rbytes(43, 0x21, 0x7e) . '; a=b';
        $h{'X-Fuzz-' . rnd(1000)} = rbytes(rnd(200), 0x20, 0xff);
        $h{Accept} = mutate('text/html,application/xhtml+xml;q=0.9');
        $h{'Accept-Language'} = 'ja,en;q=0.5';
        $h{Referer} = 'http://127.0.0.1/' . rbytes(rnd(50), 0x21, 0x7e);
        $h{body} = mutate(template_body('/login', $sess->[1], 0))
            if $method ne 'GET' && $method ne 'HEAD';
    }

    for my $k (keys %h) {
        next if $k eq 'body';
        $h{$k} =~ s/[\r\n]/ /g;           # framing stays intact
    }

    my $bytes = request_bytes($method, $target, %h);
    my $res = raw_http($bytes, timeout => 15);
    my $st = $res->{status} // 'none';
    $seen{$st}++;

    my $problem;
    if (!defined $res->{status}) {
        $problem = 'no well-formed status line';
    } elsif (!$allowed{$st}) {
        $problem = "status $st";
    } elsif ($method ne 'HEAD' && defined $res->{headers}{'content-length'}
             && $res->{headers}{'content-length'} != length $res->{content}) {
        $problem = 'Content-Length ' . $res->{headers}{'content-length'}
                 . ' but ' . length($res->{content}) . ' bytes';
    } elsif ($TITLE{$st} && $method ne 'HEAD'
             && index($res->{text}, "<h1>$TITLE{$st}</h1>") < 0
             # a link of a mail with a wrong token: its own page, 404
             && !($st == 404 && $target =~ m{^/verify(?:\?|$)}
                  && $res->{text} =~ m{<h1>メールアドレスの確認</h1>})) {
        $problem = "$st without the Japanese error page";
    }
    if ($problem) {
        (my $shown = substr($bytes, 0, 1500)) =~ s/([^\x20-\x7e\n])/sprintf('\\x%02X', ord $1)/ge;
        push @failures, "request $i: $problem\n$shown\n--- answer:\n"
                        . substr($res->{raw}, 0, 300);
        last if @failures >= 5;
    }
}

my $took = time - $t0;
is(scalar @failures, 0, sprintf('fuzz: %d requests (seed %d) all answered with '
                                . 'a well-formed status in {%s} (%.1f s)',
                                $rounds, $seed, join(',', sort keys %allowed),
                                $took))
    or diag(join("\n\n", @failures));
diag('fuzz statuses: ' . join(', ', map { "$_ x$seen{$_}" } sort keys %seen));
cmp_ok(scalar(keys %seen), '>=', 5, 'the fuzz reached at least five different answers');

is(join(',', $t->worker_pids), join(',', @workers),
   'the worker that started is the worker that ended (it never crashed)');
unlike($t->error_log, qr/exited on signal/, 'error.log: no worker exited on a signal');

$t->done;
done_testing;
