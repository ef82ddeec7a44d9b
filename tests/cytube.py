"""A scripted CyTube server on 127.0.0.1, for the real bridge (kryten-robot) to connect to.

What it speaks is taken from CyTube's own source (calzoneman/sync 3.86: src/io/ioserver.js,
src/user.js, src/channel/*.js, src/media.js) and from the bridge's client code
(kryten/cytube_connector.py, kryten/socket_io.py in kryten-robot 1.12.6):

- `GET /socketconfig/<channel>.json` over HTTPS (the bridge always asks https://<domain>):
  `{"servers": [{"url": "https://127.0.0.1:<port>", "secure": true}]}`.
- engine.io protocol 3, as CyTube's socket.io 4 server speaks it with `allowEIO3`: a polling
  handshake answered with one `<length>:<packet>` payload holding the open packet, then the
  websocket upgrade (`2probe` -> `3probe`, `5`), client pings `2` answered with `3`.
- socket.io 2 frames: `40` (the main namespace, joined at once for EIO3 clients) and
  `42[event, data]`.
- The channel: the join sequence of `Channel.acceptUser` and each module's
  `onUserPostJoin`, the login frames of `User.login`, and the broadcasts of chat, users,
  AFK, mutes, ranks, emotes and media, with the per-rank user views of `packUserData`.

Only the websocket framing CyTube's clients need is implemented (RFC 6455: unfragmented
text frames, ping/pong, close); everything runs on one asyncio server with TLS.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import secrets
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PING_INTERVAL_MS = 25_000  # socket.io's default; CyTube sets only the timeout
PING_TIMEOUT_MS = 120_000  # src/io/ioserver.js
MAX_PAYLOAD = 1 << 20  # maxHttpBufferSize
BUFFER_LINES = 15  # ChatModule.sendMessage keeps the last 15 broadcast lines
MUTE_PERM = 1.5  # DEFAULT_PERMISSIONS.mute
CLOAKED_IP = "NxKV.5Bd5.Ycc2.oUXD"


def sanitize(text: str) -> str:
    """XSS.sanitizeText: what CyTube does to every chat line before sending it."""
    for a, b in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"), ("'", "&#39;")):
        text = text.replace(a, b)
    return text.replace("(", "&#40;").replace(")", "&#41;")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Person:
    """A user in the channel: scripted, or the bridge once it has logged in."""

    name: str
    rank: float = 1
    afk: bool = False
    muted: bool = False
    smuted: bool = False
    registered: bool = True

    def view(self, viewer_rank: float) -> dict[str, Any]:
        """Channel.packUserData: what a viewer of `viewer_rank` is told about this user."""
        base = {"name": self.name, "rank": self.rank, "profile": {"image": "", "text": ""}}
        if viewer_rank >= 2:
            meta = {
                "afk": self.afk,
                "muted": self.muted,
                "smuted": self.smuted,
                "aliases": [self.name],
                "ip": CLOAKED_IP,
            }
        else:
            meta = {"afk": self.afk, "muted": self.muted and not self.smuted}
        return {**base, "meta": meta}


@dataclass
class Media:
    id: str
    title: str
    seconds: int
    type: str
    uid: int

    def pack(self) -> dict[str, Any]:
        """Media.pack (undefined meta fields vanish in JSON, so `meta` is {} for these types)."""
        minutes, secs = divmod(self.seconds, 60)
        hours, minutes = divmod(minutes, 60)
        duration = f"{hours:02d}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
        return {
            "id": self.id,
            "title": self.title,
            "seconds": self.seconds,
            "duration": duration,
            "type": self.type,
            "meta": {},
        }

    def item(self, queueby: str) -> dict[str, Any]:
        return {"media": self.pack(), "uid": self.uid, "temp": False, "queueby": queueby}


@dataclass
class Connection:
    """One real socket (the bridge)."""

    writer: asyncio.StreamWriter
    person: Person | None = None  # set at login
    rank: float = -1  # effective rank: -1 before login (User constructor emits rank -1)
    joined: bool = False
    upgraded: bool = False
    pending: list[str] = field(default_factory=list)  # engine.io packets before the upgrade
    sent: list[tuple[str, Any]] = field(default_factory=list)
    received: list[tuple[str, Any]] = field(default_factory=list)

    def emit(self, event: str, data: Any) -> None:
        self.sent.append((event, data))
        self.packet("42" + json.dumps([event, data], separators=(",", ":")))

    def packet(self, text: str) -> None:
        if not self.upgraded:
            self.pending.append(text)
            return
        self.writer.write(_ws_frame(0x1, text.encode()))


def _ws_frame(opcode: int, data: bytes) -> bytes:
    n = len(data)
    if n < 126:
        head = bytes([0x80 | opcode, n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 127]) + n.to_bytes(8, "big")
    return head + data


async def _ws_read(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    b1, b2 = await reader.readexactly(2)
    if not b1 & 0x80:
        raise ConnectionError("fragmented websocket frames are not expected from the bridge")
    n = b2 & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    elif n == 127:
        n = int.from_bytes(await reader.readexactly(8), "big")
    mask = await reader.readexactly(4) if b2 & 0x80 else b""
    data = await reader.readexactly(n)
    if mask:
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return b1 & 0x0F, data


class CyTube:
    """One channel on a scripted CyTube server. Script methods are synchronous: each changes
    the channel and sends the frames CyTube would send, in CyTube's order."""

    def __init__(self, channel: str, cert: Path, key: Path, accounts: dict[str, tuple[str, int]]) -> None:
        self.channel = channel
        self.accounts = accounts  # name -> (password, channel rank)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.port = 0
        self.users: list[Person] = []
        self.emotes: list[dict[str, str]] = []
        self.buffer: list[dict[str, Any]] = []
        self.playlist: list[Media] = []
        self.current: Media | None = None
        self.queueby = "Projectionist"
        self.connections: list[Connection] = []
        self.sessions: dict[str, Connection] = {}
        self.logins = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # --- the server -------------------------------------------------------------------

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ctx)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        for conn in list(self.connections):
            conn.writer.transport.abort()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def domain(self) -> str:
        """What the bridge is configured with: it fetches https://<domain>/socketconfig/..."""
        return f"127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            line, *header_lines = head.decode("latin-1").split("\r\n")
            method, target, _ = line.split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines if h)}
            url = urlsplit(target)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if method == "GET" and url.path == f"/socketconfig/{self.channel}.json":
                body = {"servers": [{"url": f"https://{self.domain}", "secure": True}]}
                await self._http(writer, 200, json.dumps(body).encode(), "application/json; charset=utf-8")
            elif url.path == "/socket.io/" and query.get("EIO") == "3":
                await self._engine_io(reader, writer, query, headers)
            else:
                await self._http(writer, 404, b'{"error":"not found"}', "application/json")
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, ValueError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _http(self, writer: asyncio.StreamWriter, status: int, body: bytes, ctype: str) -> None:
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[status]
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()

    async def _engine_io(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        query: dict[str, str],
        headers: dict[str, str],
    ) -> None:
        if query.get("transport") == "polling" and "sid" not in query:
            sid = base64.urlsafe_b64encode(secrets.token_bytes(15)).decode()
            conn = Connection(writer)
            self.sessions[sid] = conn
            opened = {
                "sid": sid,
                "upgrades": ["websocket"],
                "pingInterval": PING_INTERVAL_MS,
                "pingTimeout": PING_TIMEOUT_MS,
                "maxPayload": MAX_PAYLOAD,
            }
            packet = "0" + json.dumps(opened, separators=(",", ":"))
            # The namespace connect and the User's first frame wait for the next transport
            # flush: with the bridge, the websocket upgrade.
            conn.packet("40")
            self._on_connection(conn)
            await self._http(writer, 200, f"{len(packet)}:{packet}".encode(), "text/plain; charset=UTF-8")
            return
        conn_or_none = self.sessions.pop(query.get("sid", ""), None)
        if (
            query.get("transport") != "websocket"
            or conn_or_none is None
            or "sec-websocket-key" not in headers
        ):
            await self._http(writer, 400, b'{"code":1,"message":"Session ID unknown"}', "application/json")
            return
        conn = conn_or_none
        accept = base64.b64encode(hashlib.sha1((headers["sec-websocket-key"] + WS_GUID).encode()).digest())
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        conn.writer = writer
        self.connections.append(conn)
        try:
            while True:
                opcode, data = await _ws_read(reader)
                if opcode == 0x8:  # close
                    writer.write(_ws_frame(0x8, data[:2]))
                    await writer.drain()
                    return
                if opcode == 0x9:  # ping (the websockets client's keepalive)
                    writer.write(_ws_frame(0xA, data))
                elif opcode == 0x1:
                    self._on_packet(conn, data.decode())
                await writer.drain()
        finally:
            self._part(conn)

    def _on_packet(self, conn: Connection, text: str) -> None:
        if text == "2probe":
            conn.writer.write(_ws_frame(0x1, b"3probe"))
        elif text == "5":  # upgrade done: flush what waited for it
            conn.upgraded = True
            pending, conn.pending = conn.pending, []
            for p in pending:
                conn.packet(p)
        elif text.startswith("2"):
            conn.packet("3" + text[1:])
        elif text.startswith("42"):
            event, *args = json.loads(text[2:])
            data = args[0] if args else None
            conn.received.append((event, data))
            self._on_event(conn, event, data)

    # --- what CyTube does for a socket --------------------------------------------------

    def _on_connection(self, conn: Connection) -> None:
        conn.emit("rank", -1)  # new User() without a session cookie

    def _on_event(self, conn: Connection, event: str, data: Any) -> None:
        if event == "joinChannel" and not conn.joined:
            conn.joined = True
            self._accept(conn)
        elif event == "login" and isinstance(data, dict):
            self._login(conn, str(data.get("name", "")), str(data.get("pw", "")))
        elif event == "playerReady":
            self._send_change_media([conn])

    def _accept(self, conn: Connection) -> None:
        """Channel.acceptUser, then each module's onUserPostJoin, for a not yet logged-in socket."""
        conn.emit("setPermissions", PERMISSIONS)
        conn.emit("setPlaylistLocked", True)
        conn.emit("emoteList", list(self.emotes))
        for msg in self.buffer:
            conn.emit("chatMsg", msg)
        conn.emit("drinkCount", 0)
        conn.emit("channelCSSJS", {"css": "", "cssHash": "", "js": "", "jsHash": ""})
        conn.emit("setMotd", "Welcome to the Grindhouse")
        conn.emit("channelOpts", CHANNEL_OPTS)
        self._send_playlist([conn])
        self._send_change_media([conn])
        conn.emit("userlist", [u.view(conn.rank) for u in self.users])
        self._usercount()

    def _login(self, conn: Connection, name: str, pw: str) -> None:
        """User.login (a registered name with its password), then the U_LOGGED_IN waiters."""
        account = self.accounts.get(name)
        if account is None or account[0] != pw:
            conn.emit("login", {"success": False, "error": "Invalid username/password combination"})
            return
        self.logins += 1
        channel_rank = account[1]
        conn.rank = 1
        conn.emit("rank", 1)
        conn.emit("login", {"success": True, "name": name})
        person = Person(name, rank=1)
        conn.person = person
        self.users.append(person)
        self._user_join(person)
        # Channel.joinUser: the channel rank arrives from the database a moment later.
        conn.rank = person.rank = channel_rank
        conn.emit("rank", channel_rank)
        if channel_rank >= 2:  # maybeResendUserlist: crossing rank 2 changes the view
            conn.emit("userlist", [u.view(conn.rank) for u in self.users])
        self._send_playlist([conn])
        self._broadcast("setUserRank", {"name": name, "rank": channel_rank})

    def _part(self, conn: Connection) -> None:
        """Channel.partUser: the socket is gone."""
        if conn in self.connections:
            self.connections.remove(conn)
        if conn.person is not None and conn.person in self.users:
            self.users.remove(conn.person)
            self._broadcast("userLeave", {"name": conn.person.name})
            self._usercount()

    # --- broadcasting ---------------------------------------------------------------------

    def _broadcast(self, event: str, data: Any, min_rank: float | None = None) -> None:
        for conn in self.connections:
            if min_rank is None or conn.rank >= min_rank:
                conn.emit(event, data)

    def _broadcast_view(self, event: str, person: Person, min_rank: float | None = None) -> None:
        for conn in self.connections:
            if min_rank is None or conn.rank >= min_rank:
                conn.emit(event, person.view(conn.rank))

    def _user_meta(self, person: Person, min_rank: float | None = None) -> None:
        """Channel.sendUserMeta."""
        for conn in self.connections:
            if min_rank is None or conn.rank >= min_rank:
                conn.emit("setUserMeta", {"name": person.name, "meta": person.view(conn.rank)["meta"]})

    def _mod_message(self, text: str, min_rank: float = 2) -> None:
        """ChatModule.sendModMessage: a `[server]` whisper to moderators."""
        msg = {
            "username": "[server]",
            "msg": text,
            "meta": {"addClass": "server-whisper", "addClassToNameAndTimestamp": True},
            "time": now_ms(),
        }
        self._broadcast("chatMsg", msg, min_rank)

    def _usercount(self) -> None:
        self._broadcast("usercount", len(self.users))

    def _send_playlist(self, conns: list[Connection]) -> None:
        meta = {"count": len(self.playlist), "rawTime": sum(m.seconds for m in self.playlist), "time": ""}
        for conn in conns:
            conn.emit("setPlaylistMeta", meta)
            conn.emit("playlist", [m.item(self.queueby) for m in self.playlist])
            if self.current is not None:
                conn.emit("setCurrent", self.current.uid)

    def _send_change_media(self, conns: list[Connection]) -> None:
        if self.current is None:
            return
        for conn in conns:
            conn.emit("setCurrent", self.current.uid)
            conn.emit("changeMedia", {**self.current.pack(), "currentTime": 0, "paused": False})

    def _user_join(self, person: Person) -> None:
        """Channel.sendUserJoin, then ChatModule's mute check, for a logged-in user."""
        self._broadcast_view("addUser", person)
        self._mod_message(f"{person.name} joined (aliases: {person.name})")
        if person.smuted or person.muted:
            self._user_meta(person, MUTE_PERM)

    def person(self, name: str) -> Person:
        return next(u for u in self.users if u.name == name)

    # --- the script -----------------------------------------------------------------------

    def setup(
        self,
        present: list[Person],
        emotes: list[str],
        playlist: list[Media],
        history: list[tuple[str, str, int]],
    ) -> None:
        """The channel as the bridge finds it: who is there, emotes, playlist (the first one
        playing) and the chat buffer, lines (username, text, time in ms) said earlier."""
        self.users = list(present)
        self.emotes = [self._emote(n) for n in emotes]
        self.playlist = list(playlist)
        self.current = self.playlist[0]
        for user, text, t in history:
            self.buffer.append({"username": user, "msg": sanitize(text), "meta": {}, "time": t})
        del self.buffer[:-BUFFER_LINES]

    @staticmethod
    def _emote(name: str) -> dict[str, str]:
        """validateEmote: {name, image, source}."""
        escaped = "".join("\\" + c if c in "\\.?+*$^|()[]{}" else c for c in name)
        return {
            "name": name,
            "image": f"https://i.example/{name.lstrip('#')}.png",
            "source": f"(^|\\s){escaped}(?!\\S)",
        }

    def join(
        self, name: str, rank: float = 1, afk: bool = False, smuted: bool = False, guest: bool = False
    ) -> None:
        """A browser with a session joins: addUser, the moderators' notice, usercount, then the
        rank from the database (registered users only)."""
        person = Person(
            name, rank=0 if guest else 1, afk=afk, muted=smuted, smuted=smuted, registered=not guest
        )
        self.users.append(person)
        self._user_join(person)
        self._usercount()
        if not guest and rank != person.rank:
            person.rank = rank
            self._broadcast("setUserRank", {"name": name, "rank": rank})

    def leave(self, name: str) -> None:
        self.users.remove(self.person(name))
        self._broadcast("userLeave", {"name": name})
        self._usercount()

    def set_afk(self, name: str, afk: bool) -> None:
        """User.setAFK -> Channel's 'afk' listener: setUserMeta to everyone, then legacy setAFK."""
        person = self.person(name)
        if person.afk == afk:
            return
        person.afk = afk
        self._user_meta(person)
        self._broadcast("setAFK", {"name": name, "afk": afk})

    def chat(self, name: str, text: str, meta: dict[str, Any] | None = None) -> None:
        """ChatModule.handleChatMsg/processChatMsg, with the /me, /sp, /say and /afk commands."""
        person = self.person(name)
        if "/afk" not in text:
            self.set_afk(name, False)
        out_meta = dict(meta or {})
        if text.startswith(">"):
            out_meta["addClass"] = "greentext"
        command, _, rest = text.partition(" ")
        if command == "/afk":
            self.set_afk(name, not person.afk)
            return
        if command == "/me":
            out_meta.update(addClass="action", action=True)
            text = rest
        elif command == "/sp":
            out_meta["addClass"] = "spoiler"
            text = rest
        elif command == "/say" and person.rank >= 1.5:
            out_meta.update(addClass="shout", addClassToNameAndTimestamp=True)
            text = rest
        msg = {"username": name, "msg": sanitize(text), "meta": out_meta, "time": now_ms()}
        if person.smuted:  # moderators see it marked; it never enters the buffer
            self._broadcast("chatMsg", {**msg, "meta": {**out_meta, "shadow": True}}, 2)
            return
        self._broadcast("chatMsg", msg)
        self.buffer.append(msg)
        del self.buffer[:-BUFFER_LINES]

    def pm(self, sender: str, to: str, text: str) -> None:
        """ChatModule.handlePm: both ends get the frame; here the bridge is `to`."""
        msg = {"username": sender, "msg": sanitize(text), "meta": {}, "time": now_ms(), "to": to}
        for conn in self.connections:
            if conn.person is not None and conn.person.name in (sender, to):
                conn.emit("pm", msg)

    def smute(self, moderator: str, name: str) -> None:
        """ChatModule.handleCmdSMute."""
        person = self.person(name)
        person.muted = person.smuted = True
        self._user_meta(person, MUTE_PERM)
        self._mod_message(f"{moderator} shadowmuted {name}", MUTE_PERM)

    def set_rank(self, name: str, rank: float) -> None:
        """RankModule: the new rank is broadcast as setUserRank {name, rank}."""
        self.person(name).rank = rank
        self._broadcast("setUserRank", {"name": name, "rank": rank})

    def rename_emote(self, old: str, new: str) -> None:
        """EmoteModule.handleRenameEmote broadcasts {old, name, image, source}."""
        index = next(i for i, e in enumerate(self.emotes) if e["name"] == old)
        emote = {**self._emote(new), "image": self.emotes[index]["image"]}
        self.emotes[index] = emote
        self._broadcast("renameEmote", {"old": old, **emote})

    def play(self, media: Media) -> None:
        """PlaylistModule: the next item starts (setCurrent, then changeMedia)."""
        if media not in self.playlist:
            self.playlist.append(media)
        self.current = media
        self._send_change_media(list(self.connections))

    def mark(self, n: int) -> None:
        """A mediaUpdate with currentTime `n`: CyTube sends these all the time; the test waits
        until the bridge has published it, so everything sent before it is published too."""
        self._broadcast("mediaUpdate", {"currentTime": n, "paused": False})

    def drop(self) -> None:
        """The network drops every socket (no close frame)."""
        for conn in list(self.connections):
            conn.writer.transport.abort()

    async def flush(self) -> None:
        for conn in list(self.connections):
            with contextlib.suppress(ConnectionError):
                await conn.writer.drain()


PERMISSIONS = {
    "seeplaylist": -1,
    "playlistadd": 1.5,
    "playlistnext": 1.5,
    "playlistmove": 1.5,
    "playlistdelete": 2,
    "playlistjump": 1.5,
    "oplaylistadd": -1,
    "pollctl": 1.5,
    "pollvote": -1,
    "voteskip": -1,
    "mute": MUTE_PERM,
    "kick": 1.5,
    "ban": 2,
    "motdedit": 3,
    "emoteedit": 3,
    "chat": 0,
    "chatclear": 2,
}
CHANNEL_OPTS = {
    "allow_voteskip": True,
    "voteskip_ratio": 0.5,
    "afk_timeout": 600,
    "pagetitle": "Grindhouse",
    "maxlength": 0,
    "externalcss": "",
    "externaljs": "",
    "chat_antiflood": False,
    "chat_antiflood_params": {"burst": 4, "sustained": 1, "cooldown": 4},
    "show_public": False,
    "enable_link_regex": True,
    "password": False,
    "allow_dupes": False,
    "torbanned": False,
    "block_anonymous_users": False,
    "allow_ascii_control": False,
    "playlist_max_per_user": 0,
    "new_user_chat_delay": 0,
    "new_user_chat_link_delay": 0,
    "playlist_max_duration_per_user": 0,
}
