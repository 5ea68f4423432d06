# The mail outbox (REQ U-AUTH-1, N-SEC-3): a mail is written in the same
# transaction as the sign-up, survives an SMTP outage, a worker killed
# while sending, and tampering in the database; what reaches the SMTP
# server is correct MIME, and neither logs nor the outbox hold personal
# data in clear.
use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/lib";
use Encode qw(decode encode);
use MIME::Base64 qw(decode_base64 encode_base64);
use Test::More;
use Time::HiRes qw(sleep time);
use ShinseiTest;
use ShinseiTest::Mail;
use ShinseiTest::SlowMail;
use ShinseiTest::Accounts qw(sign_up signup_post signup_fields outbox_rows
                             outbox_status_counts wait_outbox
                             wait_outbox_settled parallel_sign_ups);

binmode(Test::More->builder->$_, ':encoding(UTF-8)')
    for qw(output failure_output todo_output);

my $SUBJECT = '【葛城市】メールアドレスの確認';
my $START = time;

sub elapsed { note(sprintf '%s: %.1f s since the start', $_[0], time - $START) }

sub messages_to {
    my ($mail, $addr) = @_;
    return grep { grep { lc($_) eq lc($addr) } @{ $_->{envelope_to} } }
           $mail->messages;
}

sub count_sql {
    my ($t, $sql) = @_;
    return 0 + $t->psql($sql);
}


# === one worker, SMTP as configured by the harness (attempts=5) =========

# the slow sink with no delay is the ordinary sink; the last part slows it
my $t = ShinseiTest->new(no_start => 1);
my $mail = ShinseiTest::SlowMail->attach($t, delay_ms => 0);
$t->start;


# --- a sign-up while the SMTP server is down ----------------------------

{
    my $email = 'down.taro@example.jp';
    my $name = '葛城 太郎';

    $mail->stop;
    my $b = $t->browser;
    my $r = signup_post($b, signup_fields($email, $name));
    is($r->{status}, 303,
       'U-AUTH-1: a sign-up while SMTP is down still succeeds (303)');
    is($r->{headers}{location}, '/signup/sent', 'to /signup/sent');
    $r = $b->follow($r);
    is($r->{status}, 200, 'the sent page answers 200');
    like($r->{text}, qr{<h1>確認のメールをお送りしました</h1>},
         'and tells the resident the mail is on its way');

    is(count_sql($t, 'SELECT count(*) FROM citizens'), 1,
       'the account exists although no mail could be sent');

    ok(wait_outbox($t, 'attempts >= 1 AND last_error IS NOT NULL',
                   timeout => 10),
       'the drainer tries at once and records why it failed');
    my ($row) = outbox_rows($t);
    is($row->{status}, 'pending', 'the outbox row stays pending for a retry');
    cmp_ok($row->{attempts}, '>=', 1, "attempts counted ($row->{attempts})");
    like($row->{last_error}, qr/connect/i,
         "last_error says why ($row->{last_error})");
    like($row->{key}, qr/^verify:\d+:\d+$/,
         'the row is keyed by its event (and its ten minutes)');

    my $log = $t->error_log;
    like($log, qr/\[warn\].*\bmail $row->{id} not sent\b/,
         'N-SEC-3: error.log warns of the failure, naming the outbox id');
    my ($local) = $email =~ /^([^@]+)/;
    unlike($log, qr/\Q$local\E/i, 'N-SEC-3: error.log does not hold the address');
    unlike(decode('UTF-8', $log), qr/\Q$name\E|葛城 太郎|カツラギ/,
           'N-SEC-3: nor the name');
    unlike($t->slurp("$t->{dir}/access.log"), qr/\Q$local\E/i,
           'N-SEC-3: nor does access.log');

    $mail->start;
    my @got = $mail->wait_for(count => 1, to => $email, timeout => 15);
    is(scalar @got, 1, 'once SMTP is back, the mail arrives');
    ok(wait_outbox($t, "status = 'sent'", timeout => 10),
       'and the row becomes sent');
    sleep 1.5;    # a second copy, if any, would come now
    @got = messages_to($mail, $email);
    is(scalar @got, 1, 'exactly once');
    ($row) = outbox_rows($t);
    is($row->{status}, 'sent', 'the row is sent');
    cmp_ok($row->{attempts}, '>=', 2, "after $row->{attempts} attempts");
    ok(!defined $row->{last_error}, 'its last_error is cleared');
    ok(defined $row->{sent_at}, 'with the time it was sent');
    is($got[0]{subject}, $SUBJECT, 'the mail that arrives is the verification mail');
}


# --- MIME correctness of a real mail ------------------------------------

{
    my $email = 'hanako@example.jp';
    my $name = '葛城 花子';
    my $m = sign_up($t, $email, $name);
    ok($m, 'a sign-up sends its verification mail') or BAIL_OUT('no mail');
    my ($row) = outbox_rows($t, "status = 'sent' AND id = "
                                . '(SELECT max(id) FROM outbox)');

    my $raw = $m->{raw};
    my ($head, $body) = split /\r\n\r\n/, $raw, 2;
    my @lines = split /\r\n/, $raw;

    unlike($raw, qr/(?<!\r)\n/, 'every line ends in CRLF (no bare LF)');
    unlike($raw, qr/\r(?!\n)/, 'no bare CR');
    like($raw, qr/\r\n\z/, 'the message ends with CRLF');
    unlike($raw, qr/[^\x00-\x7f]/, 'the message is 7-bit (no SMTPUTF8 needed)');
    my @long = grep { length > 78 } @lines;
    ok(!@long, 'no line is longer than 78 characters (RFC 5322 2.1.1)')
        or diag(join "\n", map { length($_) . ': ' . $_ } @long);
    is_deeply($m->{header_errors}, [], 'every header line is "Name: value"');

    my %count;
    $count{ lc $_->[0] }++ for @{ $m->{header_list} };
    is($count{$_}, 1, "exactly one $_ header")
        for qw(date from to subject message-id mime-version content-type
               content-transfer-encoding);
    ok(!$count{bcc} && !$count{cc}, 'no Cc or Bcc');

    my $h = $m->{headers};
    like($h->{date}, qr/^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d [+-]\d{4}$/,
         "Date is an RFC 5322 date ($h->{date})");
    ok(defined $m->{date_epoch} && abs($m->{date_epoch} - time) < 300,
       'and about now');
    is($m->{message_id}, "<$row->{message_id}>",
       'Message-ID is the one fixed in the outbox row');
    like($m->{message_id}, qr/^<[^<>\s]+\@katsuragi\.example\.jp>$/,
         'on the sending domain');
    is($h->{'mime-version'}, '1.0', 'MIME-Version: 1.0');
    like($h->{'content-type'}, qr{^text/plain; charset="?UTF-8"?$}i,
         'Content-Type: text/plain; charset=UTF-8');
    is(lc $h->{'content-transfer-encoding'}, 'base64',
       'Content-Transfer-Encoding: base64');
    is($h->{'auto-submitted'}, 'auto-generated',
       'Auto-Submitted: auto-generated (RFC 3834: no auto-replies)');

    my ($subject_raw) = $head =~ /^Subject: (.*?)\r\n(?![ \t])/ms;
    my @words = split /\r\n[ \t]+|[ \t]+/, $subject_raw // '';
    ok(@words, 'the subject is there');
    my @bad = grep { !/^=\?UTF-8\?B\?[A-Za-z0-9+\/]*={0,2}\?=$/i } @words;
    ok(!@bad, 'the subject is RFC 2047 encoded words only')
        or diag("not encoded words: @bad");
    my @too_long = grep { length > 75 } @words;
    ok(!@too_long, 'each encoded word is at most 75 characters')
        or diag("@too_long");
    my @broken = grep {
        my ($b64) = /^=\?UTF-8\?B\?(.*)\?=$/i;
        !defined eval { decode('UTF-8', decode_base64($b64 // ''),
                               Encode::FB_CROAK) };
    } @words;
    ok(!@broken, 'each encoded word holds whole UTF-8 characters (RFC 2047 5)')
        or diag("@broken");
    my @subject_lines = split /\r\n/, "Subject: $subject_raw";
    my @over = grep { length > 76 } @subject_lines;
    ok(!@over, 'each line of the Subject is at most 76 characters '
               . '(RFC 2047 2, lines with encoded words)')
        or diag(join "\n", map { length($_) . ': ' . $_ } @over);
    is($m->{subject}, $SUBJECT, "the subject decodes to $SUBJECT");

    is($m->{from_name}, '葛城市', 'From: the display name is the city (葛城市)');
    is($m->{from}, 'noreply@katsuragi.example.jp',
       'From: the address is shinsei_mail_from');
    like($h->{from}, qr/^=\?UTF-8\?B\?[^?]+\?= <noreply\@katsuragi\.example\.jp>$/i,
         'the display name is an encoded word, not raw UTF-8');
    is($m->{envelope_from}, 'noreply@katsuragi.example.jp',
       'the SMTP envelope sender is the same address');
    is_deeply($m->{envelope_to}, [$email], 'the envelope has only the resident');
    is($m->{to}, $email, 'To: the resident');

    my @b64_lines = split /\r\n/, $body;
    ok(!(grep { length > 76 || !m{^[A-Za-z0-9+/=]+$} } @b64_lines),
       'the body is base64 in lines of at most 76 characters');
    my $text = $m->{body};
    like($text, qr/^葛城市 オンライン申請の新規登録で、このメールアドレスが入力されました。\n/,
         'the body decodes to Japanese text');
    unlike($text, qr/\Q$name\E/,
           'finding 2: which does not repeat the name typed at sign-up');
    like($text, qr/リンクの有効期限は24時間です。/, 'it says the link lasts 24 hours');
    my $port = $t->port;
    my @links = grep { m{^http://127\.0\.0\.1:$port/verify\?t=[A-Za-z0-9_-]{20,}$} }
                @{ $m->{links} };
    is(scalar @links, 1, 'it holds the verification link on the configured site URL');
    my $decoded = decode_base64($body);
    unlike($decoded, qr/(?<!\r)\n/,
           'the decoded body has CRLF line ends (canonical text)');
    if (@links) {
        my $lb = $t->browser;
        my $r = $lb->follow($lb->get($links[0] =~ s{^http://[^/]+}{}r));
        is($r->{status}, 200, 'the link opens the verification page');
    }
}


# --- header injection through the form ----------------------------------

{
    my $citizens = count_sql($t, 'SELECT count(*) FROM citizens');
    my $outbox = count_sql($t, 'SELECT count(*) FROM outbox');
    for my $case (
        [ name  => "葛城 太郎\r\nBcc: evil\@example.jp", '氏名に改行は入力できません' ],
        [ name  => "葛城 太郎\nBcc: evil\@example.jp", '氏名に改行は入力できません' ],
        [ email => "inject\@example.jp\r\nBcc: evil\@example.jp",
          'メールアドレスに改行は入力できません' ],
    ) {
        my ($field, $value, $message) = @$case;
        (my $shown = $value) =~ s/\r/\\r/g;
        $shown =~ s/\n/\\n/g;
        my $r = signup_post($t, { %{ signup_fields('inject@example.jp') },
                                  $field => $value });
        is($r->{status}, 422, "N-SEC-3: a sign-up whose $field holds a line "
                              . "break is refused ($shown)");
        like($r->{text}, qr/\Q$message\E/, "with the message 「$message」");
    }
    is(count_sql($t, 'SELECT count(*) FROM citizens'), $citizens,
       'no account was made');
    is(count_sql($t, 'SELECT count(*) FROM outbox'), $outbox,
       'nothing was queued');
}


# --- no readable personal data in the outbox ----------------------------

{
    my @rows = outbox_rows($t);
    is(scalar @rows, 2, 'two mails were queued so far');
    my %pii = ('down.taro@example.jp' => 1, 'hanako@example.jp' => 1,
               'down.taro' => 1, 'hanako' => 1, '葛城 太郎' => 1,
               '葛城 花子' => 1, '太郎' => 1, '花子' => 1);
    for my $row (@rows) {
        like($row->{recipient_enc}, qr{^k1:[A-Za-z0-9+/]+={0,2}$},
             "row $row->{id}: recipient_enc is key id and ciphertext");
        like($row->{body_enc}, qr{^k1:[A-Za-z0-9+/]+={0,2}$},
             "row $row->{id}: body_enc is key id and ciphertext");
        my $all = join "\t", map { $_ // '' } values %$row;
        my @found = grep { index(lc $all, lc $_) >= 0 } sort keys %pii;
        ok(!@found, "N-SEC-3: row $row->{id} holds no address or name in clear")
            or diag("found: @found");
        my @b64 = grep { index($all, encode_base64(encode('UTF-8', $_), '')) >= 0 }
                  grep { /@/ } keys %pii;
        ok(!@b64, "row $row->{id}: nor merely base64-encoded");
        unlike($row->{recipient_enc} . $row->{body_enc}, qr/verify\?t=|example\.jp/,
               "row $row->{id}: neither the link nor the domain shows");
    }
    my ($r1, $r2) = @rows;
    isnt($r1->{recipient_enc}, $r2->{recipient_enc},
         'two recipients give two different ciphertexts');
}


# --- a slow SMTP server does not hold up pages --------------------------

{
    # the server stores the message, then waits 1.5 s before its 250
    $mail->restart(delay_ms => 1500);
    my $email = 'slow.server@example.jp';
    my $r = signup_post($t, signup_fields($email));
    is($r->{status}, 303, 'a sign-up while the SMTP server is slow');
    ok(wait_outbox($t, "status <> 'pending'", timeout => 10),
       'the drainer is sending it');
    sleep 0.5;    # now in the wait for the 250 after the data
    my $t0 = time;
    $r = $t->get('/static/css/site.css');
    my $took = time - $t0;
    is($r->{status}, 200, 'a static file answers meanwhile');
    cmp_ok($took, '<', 0.5,
           sprintf('without waiting for the SMTP server (%.3f s; one worker)',
                   $took));
    ok(scalar $mail->wait_for(count => 1, to => $email, timeout => 15),
       'the slow mail arrives');
    ok(wait_outbox_settled($t, timeout => 10), 'and is marked sent');
    $mail->restart(delay_ms => 0);
}

$t->done;
elapsed('one worker, attempts=5');


# === attempts=2: dead letters and tampered rows =========================

my $t2 = ShinseiTest->new(mail => 1,
                          smtp_opts => 'timeout=3s retry=1s attempts=2');
my $mail2 = $t2->mail;

# The drainers look for due rows every 5 s; here the test also wakes
# them with NOTIFY shinsei_outbox (notify => 1) as soon as a retry is due
# (retry=1s), so the attempts come quickly.  The 5 s tick alone is what
# brings the mail back in the outage test above.

# --- a mail that always fails becomes dead -------------------------------

my $dead_email = 'never.delivered@example.jp';
{
    $mail2->stop;
    is(signup_post($t2, signup_fields($dead_email))->{status}, 303,
       'a sign-up while SMTP stays down');
    ok(wait_outbox($t2, "status = 'dead'", timeout => 20, notify => 1),
       'after the last attempt its mail is dead, not retried for ever');
    my ($row) = outbox_rows($t2);
    is($row->{status}, 'dead', "the row's status is dead");
    is($row->{attempts}, 2, 'after exactly attempts=2 attempts');
    like($row->{last_error}, qr/connect/i,
         "with its last error kept ($row->{last_error})");
    ok(!defined $row->{claimed_until}, 'and no lease');
    my $log = $t2->error_log;
    my @warn = $log =~ /\[warn\][^\n]*\bmail $row->{id} not sent\b/g;
    is(scalar @warn, 2, 'each failure is logged with the outbox id');
    like($log, qr/\[error\][^\n]*\bmail $row->{id} is dead after 2 attempts: /,
         'its death is logged at [error] for the operator');
    unlike($log, qr/never\.delivered/i, 'N-SEC-3: without the address');
    $mail2->start;
}

# --- the server's own answers: 5xx ends at once, 4xx is tried again ------

{
    my $rej = 'reject-me@example.jp';
    my $tmp = 'tempfail-me@example.jp';
    is(signup_post($t2, signup_fields($rej))->{status}, 303,
       'a sign-up whose address the SMTP server refuses with 550');
    my $id1 = $t2->psql('SELECT max(id) FROM outbox');
    is(signup_post($t2, signup_fields($tmp))->{status}, 303,
       'a sign-up whose address it defers with 451');
    my $id2 = $t2->psql('SELECT max(id) FROM outbox');
    ok(wait_outbox($t2, "id <> $id1 OR status = 'dead'", timeout => 20,
                   notify => 1), 'the refused mail is dead');
    my ($r1) = outbox_rows($t2, "id = $id1");
    is($r1->{attempts}, 1, '... after one attempt: 5xx is permanent '
                           . '(RFC 5321 4.2.1), trying again cannot help');
    like($r1->{last_error}, qr/\b550\b/, "... the reply code kept "
                                         . "($r1->{last_error})");
    unlike($r1->{last_error}, qr/No such mailbox/,
           '... but not the text of the reply (it may quote the address)');
    ok(wait_outbox($t2, "id <> $id2 OR status = 'dead'", timeout => 20,
                   notify => 1),
       'the deferred mail is dead once its attempts are used up');
    my ($r2) = outbox_rows($t2, "id = $id2");
    is($r2->{attempts}, 2, '... after attempts=2 attempts: 4xx is tried '
                           . 'again');
    like($r2->{last_error}, qr/\b451\b/, "... with its reply code "
                                         . "($r2->{last_error})");
    my $log = $t2->error_log;
    unlike($log, qr/reject-me|tempfail-me/, 'N-SEC-3: neither address is '
                                            . 'logged');
}

# --- a row tampered with in the database is refused ----------------------

{
    my %tamper = (
        'tamper.subject@example.jp' =>
            [ subject => q{E'x\r\nBcc: evil@example.jp'} ],
        'tamper.lf@example.jp' =>
            [ subject => q{E'x\nBcc: evil@example.jp'} ],
        'tamper.fromname@example.jp' =>
            [ from_name => q{E'葛城市\r\nBcc: evil@example.jp'} ],
        'tamper.fromaddr@example.jp' =>
            [ from_addr => q{E'noreply@katsuragi.example.jp>\r\nRCPT TO:<evil@example.jp'} ],
        'tamper.msgid@example.jp' =>
            [ message_id => q{E'x@katsuragi.example.jp>\r\nBcc: <evil@example.jp'} ],
    );
    my %id;
    for my $email (sort keys %tamper) {
        ok(sign_up($t2, $email), "$email signs up and gets the mail");
        $id{$email} = $t2->psql('SELECT max(id) FROM outbox');
    }
    for my $email (sort keys %tamper) {
        my ($col, $value) = @{ $tamper{$email} };
        $t2->psql("UPDATE outbox SET status = 'pending', attempts = 0,"
                  . " next_attempt_at = now(), sent_at = NULL,"
                  . " $col = $value WHERE id = $id{$email}");
    }
    my $ids = join ',', values %id;
    ok(wait_outbox($t2, "id NOT IN ($ids) OR status = 'dead'", timeout => 20,
                   notify => 1),
       'N-SEC-3: every tampered row ends dead');
    for my $email (sort keys %tamper) {
        my ($row) = outbox_rows($t2, "id = $id{$email}");
        is($row->{status}, 'dead', "a CR or LF in $tamper{$email}[0] "
                                   . "($email): refused, dead");
        # the Message-ID is bound to the ciphertexts as their AAD
        # (finding 10): changed, they no longer decrypt
        like($row->{last_error},
             $tamper{$email}[0] eq 'message_id'
             ? qr/^cannot decrypt: unknown data key or not this row's value$/
             : qr/header/i,
             "its error names the header or the binding ($row->{last_error})");
        is(scalar(my @m = messages_to($mail2, $email)), 1,
           'nothing more was sent to the resident');
    }
    my $log = $t2->error_log;
    for my $email (sort keys %tamper) {
        like($log, qr/\[warn\][^\n]*\bmail $id{$email} not sent: (?:refused: a header|cannot decrypt)/,
             "the refusal of the mail to $email is logged with its id");
    }
    unlike($log, qr/evil|tamper\./i,
           'N-SEC-3: without the refused value or the address');
    my @evil = grep { $_->{raw} =~ /evil/i
                      || grep { /evil/i } @{ $_->{envelope_to} } }
               $mail2->messages;
    is(scalar @evil, 0, 'no message with the injected Bcc reached the server');
    ok(!(grep { $_->{headers}{bcc} } $mail2->messages),
       'no message has a Bcc header at all');

    my ($dead) = outbox_rows($t2, "key LIKE 'verify:%' AND id = (SELECT min(id) FROM outbox)");
    is($dead->{status}, 'dead', 'the dead mail stays dead with SMTP back');
    is($dead->{attempts}, 2, 'and is not tried again');
    is(scalar(my @none = messages_to($mail2, $dead_email)), 0,
       'its resident got nothing');
}

$t2->done;
elapsed('dead letters and tampered rows');


# === two workers, one killed with -9 while mails are being sent =========

# 200 sign-ups while the SMTP server is down leave a backlog of 200 due
# mails (each tried once); then the server comes back, slow: it stores
# each message and answers 250 only after 50 ms.  Once the backlog is
# flowing, the sink holds back every 250 (ShinseiTest::SlowMail::hold):
# each worker is frozen in the middle of a batch, with messages stored but
# not acknowledged, and one of them is killed there.  Each row records the
# pid of the worker that claimed it (sql/005), so the test knows which
# rows the dead worker held.  timeout=2s makes the lease 4 * 2 + 10 = 18 s.
my $t3 = ShinseiTest->new(no_start => 1, workers => 2,
                          smtp_opts => 'timeout=2s retry=1s attempts=5');
my $mail3 = ShinseiTest::SlowMail->attach($t3, delay_ms => 50);
$t3->start;

{
    my $n = 200;
    my @emails = map { sprintf 'crash%03d@example.jp', $_ } 1 .. $n;
    my @before = sort $t3->worker_pids;
    is(scalar @before, 2, 'two workers');

    $mail3->stop;
    my $t0 = time;
    my $ok = parallel_sign_ups($t3, \@emails, procs => 8);
    is($ok, $n, sprintf('%d sign-ups answered 303 (%.1f s)', $n, time - $t0));
    is(count_sql($t3, 'SELECT count(*) FROM outbox'), $n,
       "$n mails are in the outbox");
    ok(wait_outbox($t3, 'attempts >= 1', timeout => 10),
       'each was tried once while SMTP was down');
    $mail3->start;
    sleep 1;                          # retry=1s: all are due again
    $t3->psql('NOTIFY shinsei_outbox');

    my $sent = 0;
    for (1 .. 200) {
        $sent = count_sql($t3, "SELECT count(*) FROM outbox"
                               . " WHERE status = 'sent'");
        last if $sent >= 40;
        sleep 0.1;
    }
    cmp_ok($sent, '>=', 40, "the backlog is flowing ($sent sent)");
    $mail3->hold;

    # the workers' rows in flight: stable once every transfer waits for
    # its held 250; the per-read timeout (2 s) has not run out yet
    my ($prev, $held) = ('', '');
    my $until = time + 1.2;
    while (time < $until) {
        sleep 0.15;
        $held = $t3->psql("SELECT claimed_by, count(*) FROM outbox"
                          . " WHERE status = 'sending'"
                          . " GROUP BY 1 ORDER BY 2 DESC, 1");
        last if $held ne '' && $held eq $prev;
        $prev = $held;
    }
    my %held_by = map { split /\t/ } split /\n/, $held;
    my ($victim) = $held =~ /^(\d+)\t/;     # the one holding the most
    $victim //= $before[0];
    my $victim_rows = $held_by{$victim} // 0;
    my ($killed_at, $left) = split /\t/, $t3->psql(
        "SELECT extract(epoch FROM now()),"
        . " count(*) FILTER (WHERE status <> 'sent') FROM outbox");
    kill 'KILL', $victim;
    $mail3->release;
    note("killed worker $victim holding $victim_rows rows in flight; "
         . "in flight by worker: " . join(', ', map { "$_ => $held_by{$_}" }
                                           sort keys %held_by)
         . "; $left not sent yet");
    ok((grep { $_ == $victim } @before),
       'the rows in flight are held by one of the workers');
    cmp_ok($victim_rows, '>', 0,
           'the kill lands while the worker is in the middle of a batch');
    cmp_ok($left, '>', $victim_rows, 'and while other mails are unsent');

    my @after;
    for (1 .. 100) {
        @after = sort $t3->worker_pids;
        last if @after == 2 && !grep { $_ == $victim } @after;
        sleep 0.05;
    }
    ok(@after == 2 && !(grep { $_ == $victim } @after),
       'the master starts a new worker in its place');

    # the other worker's transfers end once released; the killed worker's
    # rows stay 'sending' until their lease (18 s from their claim) ends
    sleep 3;
    my @orphans = split /\n/, $t3->psql(
        "SELECT id FROM outbox WHERE status = 'sending'"
        . " AND claimed_by = $victim"
        . " AND claimed_until <= to_timestamp($killed_at) + interval '18 s'");
    is(scalar @orphans, $victim_rows,
       'the rows the killed worker held are left claimed until their lease '
       . 'ends (' . scalar(@orphans) . ')');

    ok(wait_outbox_settled($t3, timeout => 40),
       'in time no mail is pending or sending: the killed worker\'s rows '
       . 'were taken over after their lease');
    my $c = outbox_status_counts($t3);
    is($c->{sent}, $n, "all $n outbox rows are sent")
        or diag(explain $c);
    if (@orphans) {
        my $ids = join ',', @orphans;
        is(count_sql($t3, "SELECT count(*) FROM outbox WHERE id IN ($ids)"
                          . " AND status = 'sent'"), scalar @orphans,
           'another worker took them over and sent them');
    }

    sleep 1;    # the last answers of the sink
    my @msgs = $mail3->messages;
    my %ids_of;
    for my $m (@msgs) {
        $ids_of{ lc $_ }{ $m->{message_id} }++ for @{ $m->{envelope_to} };
    }
    my @missing = grep { !$ids_of{$_} } @emails;
    ok(!@missing, 'U-AUTH-1: every address got its mail')
        or diag(scalar(@missing) . " missing, e.g. @missing[0 .. ($#missing < 4 ? $#missing : 4)]");
    my @two = grep { keys %{ $ids_of{$_} } > 1 } keys %ids_of;
    ok(!@two, 'no address got two different messages (a copy sent again '
              . 'keeps its Message-ID)')
        or diag("e.g. $two[0]: " . join(' ', keys %{ $ids_of{ $two[0] } }));
    my %outbox_ids = map { ("<$_>" => 1) }
                     split /\n/, $t3->psql('SELECT message_id FROM outbox');
    my %sink_ids = map { ($_->{message_id} => 1) } @msgs;
    is_deeply([sort keys %sink_ids], [sort keys %outbox_ids],
              'the Message-IDs received are exactly those of the outbox');
    my $copies = @msgs - keys %sink_ids;
    cmp_ok(scalar @msgs, '>=', $n, scalar(@msgs) . " messages stored, "
           . "$copies of them second copies (at-least-once)");
    note("$copies second copies after the kill");

    # the master's alert about the worker we killed is expected: it is
    # checked here and taken out of error.log for done()
    my $log = $t3->error_log;
    my $expected = qr/\[alert\] \d+#\d+: worker process $victim exited on signal 9\b[^\n]*\n/;
    like($log, $expected, 'error.log records the killed worker');
    (my $rest = $log) =~ s/$expected//;
    open(my $fh, '>', "$t3->{dir}/error.log") or die $!;
    print $fh $rest;
    close $fh;
}

$t3->done;
elapsed('a worker killed while sending');
done_testing;
