"""A client of the SMR system's client service in Python, generated from
protocols/proto/smr_client.proto alone (grpcio-tools), used by examples/tests/python_client.rs.

usage: smr_client.py STUBS_DIR NODE_ADDR [NODE_ADDR...]
Submits three key-value commands as client "py", prints each receipt, then follows the log
until it saw them, printing each transaction.
"""
import sys

sys.path.insert(0, sys.argv[1])
import grpc  # noqa: E402
import smr_client_pb2 as pb  # noqa: E402
import smr_client_pb2_grpc as rpc  # noqa: E402


def main():
    addrs = sys.argv[2:]
    channel = grpc.insecure_channel(addrs[0])
    client = rpc.ClientStub(channel)
    commands = [b"put lang python", b"get lang", b"del lang"]
    for n, cmd in enumerate(commands):
        reply = client.Submit(pb.SubmitRequest(client_id="py", tx_no=n, payload=cmd), timeout=60)
        if reply.WhichOneof("outcome") == "receipt":
            r = reply.receipt
            print(f"receipt {n}: sn {r.sn} index {r.index} result {r.result.decode()}", flush=True)
        else:
            r = reply.rejection
            print(f"rejection {n}: {pb.Rejection.Reason.Name(r.reason)} {r.detail}", flush=True)
    mine = 0
    for d in client.Deliveries(pb.DeliveriesRequest(from_sn=0), timeout=60):
        for t in d.txs:
            print(f"delivered sn {d.sn}: {t.client_id} #{t.tx_no} {t.payload.decode()} -> {t.result.decode()}", flush=True)
            if t.client_id == "py":
                mine += 1
        if mine == len(commands):
            break
    # A lie: a number far outside the window.
    reply = client.Submit(pb.SubmitRequest(client_id="py", tx_no=1 << 40, payload=b"get x"), timeout=60)
    print(f"far number: {pb.Rejection.Reason.Name(reply.rejection.reason)}", flush=True)


if __name__ == "__main__":
    main()
