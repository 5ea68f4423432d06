"""An SMTP server with TLS and AUTH PLAIN for t/145-mail-tls.t.

    /usr/bin/python3 t/lib/shinsei_smtp_tls.py MODE PORT CERT KEY MAILDIR USER PASS

MODE is "starttls" (STARTTLS required before MAIL) or "smtps" (TLS from
the first byte).  Messages go to MAILDIR like shinsei_smtp_sink.py's.
"""

import asyncio
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from shinsei_smtp_sink import MaildirSink


def main():
    mode, port, cert, key, maildir, user, password = sys.argv[1:8]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def authenticator(server, session, envelope, mechanism, data):
        ok = (isinstance(data, LoginPassword)
              and data.login.decode() == user
              and data.password.decode() == password)
        # handled=False: aiosmtpd then answers 535 itself
        return AuthResult(success=ok, handled=False)

    kwargs = dict(hostname='127.0.0.1', port=int(port),
                  authenticator=authenticator, auth_required=True)
    if mode == 'smtps':
        kwargs.update(ssl_context=context, auth_require_tls=False)
    else:
        kwargs.update(tls_context=context, require_starttls=True)

    controller = Controller(MaildirSink(maildir), **kwargs)
    controller.start()
    print('ready', flush=True)
    try:
        asyncio.get_event_loop().run_forever()
    except KeyboardInterrupt:
        pass
    controller.stop()


if __name__ == '__main__':
    main()
