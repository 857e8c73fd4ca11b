"""An independent client (Python grpcio, stubs generated here from the .proto files) talking to a
running naast server: health without a token, a call without a token refused, then reflection,
commands, the timeline, the caller as naast sees them, and a refused request with its
google.rpc.BadRequest, signed with a bearer token. Exits non-zero with a message on the first thing
that is not as promised.

usage: independent_client.py HOST:PORT PROTO_DIR TOKEN
"""

import importlib.resources
import sys
import tempfile

import grpc
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from grpc_tools import protoc


def check(condition, message):
    if not condition:
        print(f"independent client: {message}", file=sys.stderr)
        sys.exit(1)


def stubs(proto_dir):
    out = tempfile.mkdtemp()
    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    protos = [
        "naast/v1/vocabulary.proto",
        "naast/v1/households.proto",
        "naast/v1/event_log.proto",
        "naast/v1/consent.proto",
        "naast/v1/audit.proto",
    ]
    code = protoc.main(
        ["protoc", f"-I{proto_dir}", f"-I{well_known}", f"--python_out={out}", f"--grpc_python_out={out}"]
        + protos
    )
    check(code == 0, f"the .proto files do not compile with protoc ({code})")
    sys.path.insert(0, out)


def main(address, proto_dir, token):
    stubs(proto_dir)
    from naast.v1 import consent_pb2, consent_pb2_grpc, households_pb2, households_pb2_grpc, vocabulary_pb2

    auth = [("authorization", f"Bearer {token}")]

    channel = grpc.insecure_channel(address)
    health = health_pb2_grpc.HealthStub(channel)
    for service in ["", "naast.v1.HouseholdService", "naast.v1.EventLogService"]:
        status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
        check(status == health_pb2.HealthCheckResponse.SERVING, f"health of {service!r} is {status}")

    api = households_pb2_grpc.HouseholdServiceStub(channel)
    try:
        api.CreateHousehold(households_pb2.CreateHouseholdRequest(name="zonder token"))
        check(False, "a call without a token was accepted")
    except grpc.RpcError as error:
        check(error.code() == grpc.StatusCode.UNAUTHENTICATED, f"without a token: {error.code()}")

    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    answers = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), metadata=auth
    )
    names = {s.name for answer in answers for s in answer.list_services_response.service}
    wanted = {"naast.v1.HouseholdService", "naast.v1.EventLogService", "naast.v1.ConsentService", "naast.v1.AuditService"}
    check(wanted <= names, f"reflection lists {names}")

    caller = consent_pb2_grpc.ConsentServiceStub(channel).GetCaller(consent_pb2.GetCallerRequest(), metadata=auth)
    check(caller.role == vocabulary_pb2.PRINCIPAL_ROLE_CITIZEN, f"caller role {caller.role}")

    household = api.CreateHousehold(
        households_pb2.CreateHouseholdRequest(name="Familie Peters"), metadata=auth
    ).household_id
    member = api.CreateMember(
        households_pb2.CreateMemberRequest(
            household_id=household,
            details=households_pb2.MemberDetails(name="Joris", role=vocabulary_pb2.MEMBER_ROLE_CLIENT),
        ),
        metadata=auth,
    ).member_id
    goal = api.CreateGoal(
        households_pb2.CreateGoalRequest(
            household_id=household,
            owner_member_id=member,
            title="zelfstandig boodschappen doen",
            life_domains=[vocabulary_pb2.LIFE_DOMAIN_SELF_DETERMINATION],
        ),
        metadata=auth,
    )
    entries = api.ListTimelineEntries(
        households_pb2.ListTimelineEntriesRequest(household_id=household, min_position=goal.result.position),
        metadata=auth,
    ).entries
    check([e.revision for e in entries] == [0, 1, 2], f"timeline revisions {[e.revision for e in entries]}")
    check("Joris" in entries[2].summary, f"summary {entries[2].summary!r}")
    check(list(entries[2].life_domains) == [vocabulary_pb2.LIFE_DOMAIN_SELF_DETERMINATION], "life domains")

    try:
        api.CreateGoal(
            households_pb2.CreateGoalRequest(household_id=household, owner_member_id=member, title=""), metadata=auth
        )
        check(False, "an empty title was accepted")
    except grpc.RpcError as error:
        check(error.code() == grpc.StatusCode.INVALID_ARGUMENT, f"code {error.code()}")
        status = rpc_status.from_call(error)
        check(status is not None, "no google.rpc.Status details")
        fields = []
        for detail in status.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                fields += [v.field for v in bad.field_violations]
        check(fields == ["title"], f"BadRequest fields {fields}")
    print("independent client: all checks passed")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(64)
    main(sys.argv[1], sys.argv[2], sys.argv[3])
