"""A Maildir sink for aiosmtpd, used by t/lib/ShinseiTest/Mail.pm.

    /usr/bin/python3 -m aiosmtpd -n -l 127.0.0.1:PORT \
        -c shinsei_smtp_sink.MaildirSink MAILDIR        (PYTHONPATH=t/lib)

Unlike aiosmtpd.handlers.Mailbox, which re-serialises each message with
Python's email package (CRLF becomes LF, headers are appended, a final
newline is added), this stores the DATA exactly as it came over the wire
(dot-unstuffed, nothing else), so tests see what the module really sent.
The SMTP envelope goes on two lines in front of it:

    X-Envelope-From: <sender>
    X-Envelope-To: <rcpt1>, <rcpt2>

Each message is written to MAILDIR/tmp/ and renamed into MAILDIR/new/
before the server answers 250, with a name that sorts in arrival order:
SECONDS.MMICROSP<pid>Q<n>.shinsei (seconds 10 digits, micros 6 digits).

A recipient whose local part starts with "reject-" is refused with 550
(permanent), one starting with "tempfail-" with 451 (temporary).
"""

import itertools
import os
import time


class MaildirSink:
    def __init__(self, maildir):
        self.maildir = os.path.abspath(maildir)
        for sub in ('tmp', 'new', 'cur'):
            os.makedirs(os.path.join(self.maildir, sub), exist_ok=True)
        self.seq = itertools.count(1)

    @classmethod
    def from_cli(cls, parser, *args):
        if len(args) != 1:
            parser.error('MaildirSink takes one argument: the Maildir')
        return cls(args[0])

    async def handle_RCPT(self, server, session, envelope, address,
                          rcpt_options):
        # addresses that make the server refuse, for the failure tests
        local = address.split('@')[0].lower()
        if local.startswith('reject-'):
            return '550 5.1.1 No such mailbox'
        if local.startswith('tempfail-'):
            return '451 4.3.0 Try again later'
        envelope.rcpt_tos.append(address)
        return '250 OK'

    async def handle_DATA(self, server, session, envelope):
        now = time.time_ns() // 1000
        name = '%010d.M%06dP%dQ%d.shinsei' % (
            now // 1000000, now % 1000000, os.getpid(), next(self.seq))
        head = ('X-Envelope-From: <%s>\r\nX-Envelope-To: %s\r\n' % (
            envelope.mail_from or '',
            ', '.join('<%s>' % r for r in envelope.rcpt_tos)))
        tmp = os.path.join(self.maildir, 'tmp', name)
        with open(tmp, 'wb') as f:
            f.write(head.encode('utf-8', 'surrogateescape'))
            f.write(envelope.original_content)
        os.rename(tmp, os.path.join(self.maildir, 'new', name))
        return '250 OK: queued as ' + name
