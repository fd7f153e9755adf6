"""A bare 20ft-style control client in Python, written from protocol.md: pyzmq DEALER, libnacl boxes,
and the `cbor` module 20ft clients use, so byte and text strings come back as Python sees them.

Usage: python_client.py KEYS_DIR LOCATION CONTROL_PORT MEMBER
Prints one JSON line per step; the vitest test checks them (and the HTTP side)."""

import base64
import json
import sys

import cbor
import libnacl
import libnacl.utils
import zmq


def emit(step, **fields):
    print(json.dumps(dict(step=step, **fields)), flush=True)


def main():
    keys_dir, location, port, member = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    read = lambda name: base64.b64decode(open(f"{keys_dir}/{name}").read().strip())
    secret, public, server = read(location), read(location + ".pub"), read(location + ".spub")

    skt = zmq.Context.instance().socket(zmq.DEALER)
    skt.setsockopt(zmq.LINGER, 0)
    skt.setsockopt(zmq.RCVTIMEO, 5000)
    skt.connect(f"tcp://127.0.0.1:{port}")

    # A frame left over from an earlier connection, before auth: the gateway must drop it silently.
    skt.send(cbor.dumps([libnacl.utils.rand_nonce(), b"heartbeat", b"", b"", b""]))
    skt.send(cbor.dumps([b"", b"auth", b"", {"user": public, "rid": b""}, b""]))
    answer = cbor.loads(skt.recv())
    emit("handshake", parts=len(answer), types=[type(p).__name__ for p in answer])
    nonce, boxed, rid = answer
    key = libnacl.crypto_box_open(boxed, nonce, server, secret)

    def receive():
        parts = cbor.loads(skt.recv())
        n, command, uuid, params_box, bulk_box = parts
        params = cbor.loads(libnacl.crypto_secretbox_open(params_box, n, key))
        return command, uuid, params

    def send(command, params, uuid=b""):
        n = libnacl.utils.rand_nonce()
        skt.send(cbor.dumps([n, command, uuid, libnacl.crypto_secretbox(cbor.dumps(params), n, key), b""]))

    command, uuid, offer = receive()
    emit("offer", command=command.decode(), command_type=type(command).__name__, keys=sorted(offer.keys()),
         domains=[d["domain"] for d in offer["domains"]], domain_types=[type(d["domain"]).__name__ for d in offer["domains"]])

    send(b"publish_web", {"domain": "test", "subdomain": "py.", "rewrite": None, "ssl": None, "containers": [member]}, b"uuid-publish-1")
    command, uuid, results = receive()
    emit("publish", command=command.decode(), uuid=uuid.decode(), results=results)

    send(b"publish_web", {"domain": "example.com", "subdomain": "x.", "rewrite": None, "ssl": None, "containers": [member]}, b"uuid-refused-1")
    command, uuid, results = receive()
    emit("refused", uuid=uuid.decode(), exception=results.get("exception"), exception_type=type(results.get("exception")).__name__)

    send(b"prepare_domain", {"domain": "example.org"}, b"uuid-prepare-1")
    command, uuid, results = receive()
    emit("prepare", token_type=type(results["token"]).__name__, token_length=len(results["token"]))

    # Wait for the test to check HTTP, then unpublish without a uuid, as 20ft clients do.
    sys.stdin.readline()
    send(b"unpublish_web", {"cluster": b"uuid-publish-1"})
    send(b"unpublish_web", {"cluster": b"no-such-cluster"})
    command, uuid, params = receive()
    emit("log", command=command.decode(), uuid=uuid.decode(), error=params.get("error"), log=params.get("log"))
    skt.close()


if __name__ == "__main__":
    main()
