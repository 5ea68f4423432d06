"""A slow Maildir sink for aiosmtpd, used by t/lib/ShinseiTest/SlowMail.pm.

    /usr/bin/python3 -m aiosmtpd -n -l 127.0.0.1:PORT \
        -c shinsei_smtp_slow_sink.SlowMaildirSink MAILDIR DELAY_MS

The same as shinsei_smtp_sink.MaildirSink (the message is stored exactly
as it came), then it waits DELAY_MS milliseconds before answering 250.
So a client that dies during the pause has had its message stored without
learning it: the case where an at-least-once sender sends it again.  The
pause is asyncio's, so other sessions go on meanwhile.
"""

import asyncio

from shinsei_smtp_sink import MaildirSink


class SlowMaildirSink(MaildirSink):
    def __init__(self, maildir, delay_ms=0):
        super().__init__(maildir)
        self.delay = max(0, int(delay_ms)) / 1000.0

    @classmethod
    def from_cli(cls, parser, *args):
        if len(args) not in (1, 2):
            parser.error('SlowMaildirSink takes the Maildir and DELAY_MS')
        return cls(*args)

    async def handle_DATA(self, server, session, envelope):
        answer = await super().handle_DATA(server, session, envelope)
        if self.delay:
            await asyncio.sleep(self.delay)
        return answer
