"""A recording SMTP server for client-side tests: it announces PIPELINING and XFORWARD
(with the attributes given), answers 250 to every command (354 to DATA) and keeps each
command line it received, in order, in ``commands``. Runs its own event loop in a
thread on 127.0.0.1 (``port``)."""

import asyncio
import threading


class Recorder:
    def __init__(self, announce="NAME ADDR PROTO HELO SOURCE PORT IDENT"):
        self.announce = announce
        self.commands = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(10)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._session, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    async def _session(self, r, w):
        w.write(b"220 recorder ESMTP\r\n")
        data = False
        while True:
            line = await r.readline()
            if not line:
                break
            if data:
                if line == b".\r\n":
                    data = False
                    w.write(b"250 2.0.0 queued\r\n")
                continue
            text = line.decode().rstrip("\r\n")
            self.commands.append(text)
            verb = text.split(" ", 1)[0].upper()
            if verb == "EHLO":
                w.write(f"250-recorder\r\n250-PIPELINING\r\n250-XFORWARD {self.announce}\r\n"
                        "250 8BITMIME\r\n".encode())
            elif verb == "DATA":
                data = True
                w.write(b"354 go\r\n")
            elif verb == "QUIT":
                w.write(b"221 bye\r\n")
                await w.drain()
                break
            else:
                w.write(b"250 2.0.0 ok\r\n")
            await w.drain()
        w.close()

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
