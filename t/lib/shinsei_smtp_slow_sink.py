"""A slow Maildir sink for aiosmtpd, used by t/lib/ShinseiTest/SlowMail.pm.

    /usr/bin/python3 -m aiosmtpd -n -l 127.0.0.1:PORT \
        -c shinsei_smtp_slow_sink.SlowMaildirSink MAILDIR DELAY_MS

The same as shinsei_smtp_sink.MaildirSink (the message is stored exactly
as it came), then it waits DELAY_MS milliseconds before answering 250.
So a client that dies during the pause has had its message stored without
learning it: the case where an at-least-once sender sends it again.  The
pause is asyncio's, so other sessions go on meanwhile.

While the file MAILDIR.hold exists, each message is stored and its 250
held back until the file is removed (at most 60 s): so a test can freeze
every sender in the middle of a transfer and act while they are frozen.
"""

import asyncio
import os

from shinsei_smtp_sink import MaildirSink


class SlowMaildirSink(MaildirSink):
    def __init__(self, maildir, delay_ms=0):
        super().__init__(maildir)
        self.delay = max(0, int(delay_ms)) / 1000.0
        self.hold = self.maildir.rstrip('/') + '.hold'

    @classmethod
    def from_cli(cls, parser, *args):
        if len(args) not in (1, 2):
            parser.error('SlowMaildirSink takes the Maildir and DELAY_MS')
        return cls(*args)

    async def handle_DATA(self, server, session, envelope):
        answer = await super().handle_DATA(server, session, envelope)
        if self.delay:
            await asyncio.sleep(self.delay)
        for _ in range(3000):
            if not os.path.exists(self.hold):
                break
            await asyncio.sleep(0.02)
        return answer
