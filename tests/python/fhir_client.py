"""A real FHIR client that no one here wrote (fhirpy) against naast's FHIR facade: it reads,
searches and pages what the family wrote over gRPC, and a care provider's system proposes and
amends an agreement that the family then accepts.

Usage: python3 fhir_client.py BASE PROVIDER_TOKEN FAMILY_TOKEN PATIENT_ID CONTACT_ID GOALS
Prints "all checks passed" and exits 0, or fails with an assertion naming what went wrong.
"""

import sys
import uuid

from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import ForbiddenError, OperationOutcome, ResourceNotFound


def main(base, provider_token, family_token, patient, contact, goals):
    family = SyncFHIRClient(base, authorization=f"Bearer {family_token}")
    provider = SyncFHIRClient(base, authorization=f"Bearer {provider_token}")

    # Read: the client as a Patient.
    noor = family.reference("Patient", patient).to_resource()
    assert noor["resourceType"] == "Patient" and noor["id"] == patient, noor
    assert noor["name"][0]["text"] == "Noor", noor

    # Search and page: every goal, two at a time, following the server's next links.
    found = family.resources("Goal").search(patient=f"Patient/{patient}").limit(2).fetch_all()
    assert len(found) == goals, f"{len(found)} goals paged, {goals} written"
    assert len({g["id"] for g in found}) == goals, "a goal came twice"
    counted = family.resources("Goal").search(patient=f"Patient/{patient}").count()
    assert counted == goals, counted

    # Write: a provider's system proposes an agreement, then amends it.
    agreement_id = str(uuid.uuid4())
    proposal = provider.resource(
        "CarePlan",
        identifier=[{"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{agreement_id}"}],
        status="active",
        intent="proposal",
        category=[
            {"coding": [{"system": "https://naast.nl/fhir/CodeSystem/zorgplansoort", "code": "agreement"}]},
            {"coding": [{"system": "https://naast.nl/fhir/CodeSystem/financieringsdomein", "code": "wmo"}]},
        ],
        title="begeleiding twee middagen per week",
        subject={"reference": f"Patient/{patient}"},
        period={"start": "2027-02-01"},
        activity=[{"detail": {
            "status": "not-started",
            "performer": [{"identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{contact}"}}],
        }}],
    )
    proposal.save()
    assert proposal["id"] == agreement_id, proposal
    assert proposal["intent"] == "proposal", proposal
    proposal["title"] = "begeleiding drie middagen per week"
    proposal.save()
    again = provider.reference("CarePlan", agreement_id).to_resource()
    assert again["title"] == "begeleiding drie middagen per week", again
    history = provider.execute(f"CarePlan/{agreement_id}/_history", method="get")
    assert history["type"] == "history" and history["total"] == 2, history

    # The family answers the proposal: its task, accepted.
    task = family.reference("Task", agreement_id).to_resource()
    assert task["status"] == "requested", task
    task["status"] = "accepted"
    task.save()
    accepted = family.reference("CarePlan", agreement_id).to_resource()
    assert accepted["intent"] == "plan", accepted

    # Refusals arrive as the library's errors.
    try:
        provider.resource("Goal", subject={"reference": f"Patient/{patient}"}).save()
        raise AssertionError("a Goal was written")
    except OperationOutcome as outcome:
        assert "read-only" in str(outcome), outcome
    try:
        family.reference("CarePlan", str(uuid.uuid4())).to_resource()
        raise AssertionError("an unknown agreement was read")
    except (ForbiddenError, ResourceNotFound):
        pass
    print("all checks passed")


if __name__ == "__main__":
    base, provider, family_token, patient, contact, goals = sys.argv[1:7]
    main(base, provider, family_token, patient, contact, int(goals))
