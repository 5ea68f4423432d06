# The SMTP sink of the tests (t/lib/ShinseiTest/Mail.pm): a real SMTP
# server on loopback that keeps each message as a file and parses it.
# Needs no nginx and no database.
use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/lib";
use Encode qw(encode);
use File::Temp qw(tempdir);
use IO::Socket::INET;
use MIME::Base64 qw(encode_base64);
use Net::SMTP;
use Test::More;
use ShinseiTest qw(free_port);
use ShinseiTest::Mail;

binmode(Test::More->builder->$_, ':encoding(UTF-8)')
    for qw(output failure_output todo_output);

my $dir = tempdir('shinsei-mail-t-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $mail = ShinseiTest::Mail->new(dir => $dir);
like($mail->port, qr/^\d+$/, 'the sink listens on a port');
is($mail->url, 'smtp://127.0.0.1:' . $mail->port, 'url is smtp://127.0.0.1:PORT');
ok(-d $mail->maildir . '/new', 'the Maildir exists');
is(scalar(my @none = $mail->messages), 0, 'no message at first');

sub send_mail {
    my ($from, $to, $data) = @_;
    my $smtp = Net::SMTP->new('127.0.0.1', Port => $mail->port, Timeout => 5,
                              Hello => 'test.localhost')
        or return "connect: $@";
    $smtp->mail($from) or return 'MAIL: ' . $smtp->message;
    $smtp->to(ref $to ? @$to : $to) or return 'RCPT: ' . $smtp->message;
    $smtp->data or return 'DATA: ' . $smtp->message;
    $smtp->datasend($data);
    $smtp->dataend or return 'end of DATA: ' . $smtp->message;
    $smtp->quit;
    return 'sent';
}

# 1. a Japanese subject as several encoded words (split in the middle of
# characters, as some encoders do) on folded lines; a base64 UTF-8 body
my $subject = '【葛城市】メールアドレスの確認のお願い（オンライン申請）';
my @words = map { '=?UTF-8?B?' . encode_base64($_, '') . '?=' }
            unpack('(a12)*', encode('UTF-8', $subject));
cmp_ok(scalar @words, '>=', 5, 'the subject is sent as several encoded words');
my $body1 = "葛城 太郎 様\r\n\r\n次のリンクを24時間以内に開いてください。\r\n"
          . "https://shinsei.example.jp/verify?token=AbC-123_x&lang=ja\r\n"
          . "（https://shinsei.example.jp/help）をご覧ください。\r\n";
my $b64 = encode_base64(encode('UTF-8', $body1));
$b64 =~ s/\n/\r\n/g;
my $msg1 = join("\r\n",
    'From: =?UTF-8?B?' . encode_base64(encode('UTF-8', '葛城市 オンライン申請'), '')
        . '?= <noreply@shinsei.example.jp>',
    'To: "Katsuragi, Taro" <taro@example.jp>',
    'Subject: ' . join("\r\n ", @words),
    'Date: Wed, 26 Nov 2025 09:30:00 +0900',
    'Message-ID: <outbox-1.abc@shinsei.example.jp>',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=UTF-8',
    'Content-Transfer-Encoding: base64',
    '', $b64);
is(send_mail('bounce@shinsei.example.jp', 'taro@example.jp', $msg1), 'sent',
   'a base64 message is accepted');

# 2. quoted-printable, Q-encoded words, a line starting with a dot
my $qp_subject = '=?UTF-8?Q?=E7=94=B3=E8=AB=8B=E3=82=92?=' . "\r\n\t"
               . '=?UTF-8?Q?=E5=8F=97=E3=81=91=E4=BB=98=E3=81=91=E3=81=BE=E3=81=97=E3=81=9F?='
               . ' (No. 2025-0001)';
my $msg2 = join("\r\n",
    'From: "=?UTF-8?Q?=E8=91=9B=E5=9F=8E=E5=B8=82?=" <noreply@shinsei.example.jp>',
    'To: hanako@example.jp',
    "Subject: $qp_subject",
    'Date: Wed, 26 Nov 2025 09:31:05 +0900',
    'Message-ID: <outbox-2.def@shinsei.example.jp>',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset="utf-8"',
    'Content-Transfer-Encoding: quoted-printable',
    '',
    '=E8=91=9B=E5=9F=8E =E8=8A=B1=E5=AD=90 =E6=A7=98',
    '',
    '=E7=94=B3=E8=AB=8B=E7=95=AA=E5=8F=B7: 2025-0001 a=3Db',
    'https://shinsei.example.jp/applications/2025-0001?from=3Dmail=E3=81=',
    '=AE=E3=83=AA=E3=83=B3=E3=82=AF',
    '.dotted line',
    '');
is(send_mail('bounce@shinsei.example.jp', ['hanako@example.jp', 'archive@example.jp'],
             $msg2), 'sent', 'a quoted-printable message is accepted');

my @m = $mail->wait_for(count => 2, timeout => 10);
is(scalar @m, 2, 'wait_for returns the two messages');
my ($m1, $m2) = @m;

is($m1->{subject}, $subject, 'folded multi-word B subject decodes');
is($m1->{from}, 'noreply@shinsei.example.jp', 'from is the address');
is($m1->{from_name}, '葛城市 オンライン申請', 'from_name is the decoded display name');
is($m1->{to}, 'taro@example.jp', 'to is the address (quoted comma in the name)');
is($m1->{message_id}, '<outbox-1.abc@shinsei.example.jp>', 'message_id');
is($m1->{date}, 'Wed, 26 Nov 2025 09:30:00 +0900', 'date as sent');
is($m1->{date_epoch}, 1764117000, 'date_epoch honours the zone');
is($m1->{content_type}, 'text/plain; charset=UTF-8', 'content_type');
is($m1->{charset}, 'utf-8', 'charset');
is($m1->{transfer_encoding}, 'base64', 'transfer_encoding');
(my $want1 = $body1) =~ s/\r\n/\n/g;
is($m1->{body}, $want1, 'the base64 body decodes to Unicode text, "\n" line ends');
ok(utf8::is_utf8($m1->{body}), 'the body is a character string');
is_deeply($m1->{links}, ['https://shinsei.example.jp/verify?token=AbC-123_x&lang=ja',
                         'https://shinsei.example.jp/help'],
          'links are found, stopping at Japanese punctuation');
like($m1->{headers}{subject}, qr/^=\?UTF-8\?B\?\S+\?= =\?UTF-8\?B\?/,
     'headers keep the raw, unfolded value');
unlike($m1->{headers}{subject}, qr/[\r\n]/, 'unfolded: no line break left');
is($m1->{envelope_from}, 'bounce@shinsei.example.jp', 'the envelope sender is kept');
is_deeply($m1->{envelope_to}, ['taro@example.jp'], 'the envelope recipients are kept');
like($m1->{raw}, qr/\AFrom: =\?UTF-8\?B\?/, 'raw starts with the first header sent');
ok($m1->{raw} =~ /\r\n/ && $m1->{raw} !~ /(?<!\r)\n/, 'raw keeps CRLF line ends');
like($m1->{file}, qr{/new/}, 'file is in the Maildir');

is($m2->{subject}, '申請を受け付けました (No. 2025-0001)',
   'folded Q words and plain text decode');
is($m2->{from_name}, '葛城市', 'a quoted encoded display name decodes');
is($m2->{transfer_encoding}, 'quoted-printable', 'quoted-printable');
is($m2->{body}, "葛城 花子 様\n\n申請番号: 2025-0001 a=b\n"
   . "https://shinsei.example.jp/applications/2025-0001?from=mailのリンク\n"
   . ".dotted line\n", 'the QP body decodes (soft breaks, split characters, dot)');
is_deeply($m2->{links}, ['https://shinsei.example.jp/applications/2025-0001?from=mail'],
          'the link ends where Japanese text begins');
is_deeply($m2->{envelope_to}, ['hanako@example.jp', 'archive@example.jp'],
          'both envelope recipients');

my @to = $mail->wait_for(count => 1, to => 'archive@example.jp', timeout => 1);
is(scalar @to, 1, 'wait_for(to => ...) matches an envelope recipient');
is($to[0]{message_id}, '<outbox-2.def@shinsei.example.jp>', 'the right one');
my $one = $mail->wait_for(count => 1, to => 'TARO@example.jp', timeout => 1);
is($one->{message_id}, '<outbox-1.abc@shinsei.example.jp>',
   'in scalar context: the first match; addresses compare without case');
@to = $mail->wait_for(count => 1, to => 'nobody@example.jp', timeout => 1);
is(scalar @to, 0, 'no message for another recipient, after the timeout');

# down and up again
my $port = $mail->port;
$mail->stop;
ok(!IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 2),
   'after stop, connections are refused');
like(send_mail('a@example.jp', 'b@example.jp', "Subject: x\r\n\r\nx\r\n"),
     qr/^connect/, 'and sending fails');
$mail->start;
is($mail->port, $port, 'start listens on the same port');
is(send_mail('bounce@shinsei.example.jp', 'jiro@example.jp',
             "From: a\@example.jp\r\nTo: jiro\@example.jp\r\nSubject: third\r\n\r\nthree\r\n"),
   'sent', 'after start, mail is accepted again');
@m = $mail->wait_for(count => 3);
is(scalar @m, 3, 'the Maildir kept the first two and has the third');
is_deeply([ map { $_->{subject} } @m ],
          [ $subject, '申請を受け付けました (No. 2025-0001)', 'third' ],
          'oldest first');
is($m[2]{body}, "three\n", 'a message without MIME headers is plain text');
is($m[2]{transfer_encoding}, '7bit', 'default transfer encoding is 7bit');

# a multipart message: text and HTML
my $multi = join("\r\n",
    'From: a@example.jp', 'To: b@example.jp', 'Subject: multi',
    'MIME-Version: 1.0',
    'Content-Type: multipart/alternative; boundary="=_b1"',
    '', 'preamble', '--=_b1',
    'Content-Type: text/plain; charset=UTF-8',
    'Content-Transfer-Encoding: 8bit', '',
    encode('UTF-8', "本文 https://a.example.jp/x"),
    '--=_b1',
    'Content-Type: text/html; charset=UTF-8', '',
    '<a href="https://a.example.jp/y?a=1&amp;b=2">y</a>',
    '--=_b1--', 'epilogue', '');
is(send_mail('a@example.jp', 'b@example.jp', $multi), 'sent', 'a multipart message');
my ($mm) = $mail->wait_for(count => 1, match => sub { $_[0]{subject} eq 'multi' });
is($mm->{body}, '本文 https://a.example.jp/x', 'body is the text/plain part');
like($mm->{html}, qr{^<a href=}, 'html is the text/html part');
is(scalar @{ $mm->{parts} }, 2, 'two parts, no preamble or epilogue');
is_deeply($mm->{links}, ['https://a.example.jp/x', 'https://a.example.jp/y?a=1&b=2'],
          'links from both parts');

$mail->clear;
is(scalar(my @left = $mail->messages), 0, 'clear removes the messages');

# DESTROY stops the server
undef $mail;
ok(!IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 2),
   'a sink that goes out of scope stops its server');

done_testing;
