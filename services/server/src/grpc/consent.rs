//! `naast.v1.ConsentService`: the family's consent, on the same households as
//! `HouseholdService` (commands go through the same checks, the same lock, the same audit).

use super::convert::{self as c, Vocabulary};
use super::households::{Answer, HouseholdApi, household, split};
use super::status::{from_app_error, invalid_argument};
use crate::auth::layer::Calling;
use naast_domain::access::Action;
use naast_domain::ids::{AccessRequestId, GrantId};
use naast_domain::state::RequestStatus;
use naast_domain::vocab::{AccessScope, FundingDomain, LifeDomain};
use naast_domain::{Command, GrantTerms, Grantee, Identity, Party};
use naast_proto::pb;
use tonic::{Request, Response, Status};

fn identity(field: &str, value: Option<pb::Identity>) -> Result<Option<Identity>, Status> {
    match value {
        None => Ok(None),
        Some(i) if i.issuer.is_empty() && i.subject.is_empty() => Ok(None),
        Some(i) => {
            if i.issuer.is_empty() {
                return Err(invalid_argument(format!("{field}.issuer"), "is required"));
            }
            if i.subject.is_empty() {
                return Err(invalid_argument(format!("{field}.subject"), "is required"));
            }
            Ok(Some(Identity {
                issuer: i.issuer,
                subject: i.subject,
            }))
        }
    }
}

fn identity_to_proto(i: &Identity) -> pb::Identity {
    pb::Identity {
        issuer: i.issuer.clone(),
        subject: i.subject.clone(),
    }
}

fn grantee(field: &str, value: Option<pb::Grantee>) -> Result<Grantee, Status> {
    use pb::grantee::Kind;
    match value.and_then(|g| g.kind) {
        None => Err(invalid_argument(
            field,
            "is required: a person, an organisation_id or a platform",
        )),
        Some(Kind::Person(p)) => Ok(Grantee::Person {
            identity: identity(&format!("{field}.person"), Some(p))?.ok_or_else(|| {
                invalid_argument(format!("{field}.person"), "needs issuer and subject")
            })?,
        }),
        Some(Kind::OrganisationId(id)) => Ok(Grantee::Organisation { id }),
        Some(Kind::Platform(p)) => Ok(Grantee::Platform {
            issuer: p.issuer,
            client_id: p.client_id,
        }),
    }
}

fn grantee_to_proto(g: &Grantee) -> pb::Grantee {
    use pb::grantee::Kind;
    pb::Grantee {
        kind: Some(match g {
            Grantee::Person { identity } => Kind::Person(identity_to_proto(identity)),
            Grantee::Organisation { id } => Kind::OrganisationId(id.clone()),
            Grantee::Platform { issuer, client_id } => Kind::Platform(pb::PlatformClient {
                issuer: issuer.clone(),
                client_id: client_id.clone(),
            }),
        }),
    }
}

fn terms(value: Option<pb::GrantTerms>) -> Result<GrantTerms, Status> {
    let t = value.ok_or_else(|| invalid_argument("terms", "is required"))?;
    Ok(GrantTerms {
        scopes: AccessScope::list("terms.scopes", &t.scopes)?,
        life_domains: LifeDomain::list("terms.life_domains", &t.life_domains)?,
        funding_domains: FundingDomain::list("terms.funding_domains", &t.funding_domains)?,
        until: c::optional_date("terms.until", &t.until)?,
    })
}

fn terms_to_proto(t: &GrantTerms) -> pb::GrantTerms {
    pb::GrantTerms {
        scopes: t.scopes.iter().map(|s| s.to_proto()).collect(),
        life_domains: t.life_domains.iter().map(|d| d.to_proto()).collect(),
        funding_domains: t.funding_domains.iter().map(|d| d.to_proto()).collect(),
        until: t.until.map(c::date_string).unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl pb::consent_service_server::ConsentService for HouseholdApi {
    async fn link_identity(
        &self,
        request: Request<pb::LinkIdentityRequest>,
    ) -> Answer<pb::LinkIdentityResponse> {
        use pb::link_identity_request::Party as P;
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let party = match r.party {
            Some(P::MemberId(m)) => Party::Member(c::id("member_id", &m)?),
            Some(P::ContactId(x)) => Party::Contact(c::id("contact_id", &x)?),
            None => {
                return Err(invalid_argument(
                    "member_id",
                    "name a member_id or a contact_id",
                ));
            }
        };
        let command = Command::LinkIdentity {
            party,
            identity: identity("identity", r.identity)?,
            organisation_id: Some(r.organisation_id).filter(|o| !o.is_empty()),
        };
        let result = self.execute(&calling, id, r.options, command).await?;
        Ok(Response::new(pb::LinkIdentityResponse {
            result: Some(result),
        }))
    }

    async fn grant_access(
        &self,
        request: Request<pb::GrantAccessRequest>,
    ) -> Answer<pb::GrantAccessResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let grant: GrantId = c::new_id("grant_id", &r.grant_id, r.options.as_ref())?;
        let command = Command::GrantAccess {
            grant,
            grantee: grantee("grantee", r.grantee)?,
            terms: terms(r.terms)?,
            request: c::optional_id("access_request_id", &r.access_request_id)?,
        };
        let result = self.execute(&calling, id, r.options, command).await?;
        Ok(Response::new(pb::GrantAccessResponse {
            result: Some(result),
            grant_id: grant.to_string(),
        }))
    }

    async fn revoke_access(
        &self,
        request: Request<pb::RevokeAccessRequest>,
    ) -> Answer<pb::RevokeAccessResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let command = Command::RevokeAccess {
            grant: c::id("grant_id", &r.grant_id)?,
            reason: r.reason,
        };
        let result = self.execute(&calling, id, r.options, command).await?;
        Ok(Response::new(pb::RevokeAccessResponse {
            result: Some(result),
        }))
    }

    async fn request_access(
        &self,
        request: Request<pb::RequestAccessRequest>,
    ) -> Answer<pb::RequestAccessResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let access_request: AccessRequestId = c::new_id(
            "access_request_id",
            &r.access_request_id,
            r.options.as_ref(),
        )?;
        let requester = match &calling {
            Calling::Unguarded => {
                return Err(Status::failed_precondition(
                    "a request for access needs a signed-in caller",
                ));
            }
            Calling::Caller(caller) if r.for_organisation => Grantee::Organisation {
                id: caller
                    .principal
                    .organisation_claim()
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        invalid_argument(
                            "for_organisation",
                            "your token names no organisation a professional or supporter acts for",
                        )
                    })?,
            },
            Calling::Caller(caller) => caller.principal.as_grantee(),
        };
        let command = Command::RequestAccess {
            request: access_request,
            requester,
            terms: terms(r.terms)?,
            reason: r.reason,
        };
        let result = self.execute(&calling, id, r.options, command).await?;
        Ok(Response::new(pb::RequestAccessResponse {
            result: Some(result),
            access_request_id: access_request.to_string(),
        }))
    }

    async fn decline_access_request(
        &self,
        request: Request<pb::DeclineAccessRequestRequest>,
    ) -> Answer<pb::DeclineAccessRequestResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let command = Command::DeclineAccessRequest {
            request: c::id("access_request_id", &r.access_request_id)?,
            reason: r.reason,
        };
        let result = self.execute(&calling, id, r.options, command).await?;
        Ok(Response::new(pb::DeclineAccessRequestResponse {
            result: Some(result),
        }))
    }

    async fn list_access_grants(
        &self,
        request: Request<pb::ListAccessGrantsRequest>,
    ) -> Answer<pb::ListAccessGrantsResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        // Owners see every grant and request; anyone else who may ask sees their own. Asking
        // is allowed to owners too, so one decision (recorded with its basis) serves both.
        let mine: Vec<Grantee> = match &calling {
            Calling::Unguarded => Vec::new(),
            Calling::Caller(caller) => {
                let p = &caller.principal;
                let mut mine = vec![p.as_grantee()];
                if let Some(org) = p.organisation_claim() {
                    mine.push(Grantee::Organisation { id: org.to_owned() });
                }
                mine
            }
        };
        let today = naast_domain::calendar::dutch_today();
        let (_, response) = self
            .households
            .guard_read(
                &calling,
                id,
                Action::RequestAccess,
                Vec::new(),
                |state, _, _| {
                    let owner = calling.access(state, Action::Own).is_ok();
                    let shown = |g: &Grantee| owner || mine.contains(g);
                    pb::ListAccessGrantsResponse {
                        grants: state
                            .grants
                            .iter()
                            .filter(|(_, g)| shown(&g.grantee))
                            .map(|(gid, g)| pb::AccessGrant {
                                grant_id: gid.to_string(),
                                grantee: Some(grantee_to_proto(&g.grantee)),
                                terms: Some(terms_to_proto(&g.terms)),
                                access_request_id: g
                                    .request
                                    .map(|r| r.to_string())
                                    .unwrap_or_default(),
                                revoked: g.revoked,
                                holds_today: g.holds_on(today),
                            })
                            .collect(),
                        requests: state
                            .access_requests
                            .iter()
                            .filter(|(_, a)| shown(&a.requester))
                            .map(|(rid, a)| pb::AccessRequest {
                                access_request_id: rid.to_string(),
                                requester: Some(grantee_to_proto(&a.requester)),
                                terms: Some(terms_to_proto(&a.terms)),
                                reason: a.reason.clone(),
                                status: match a.status {
                                    RequestStatus::Open => pb::AccessRequestStatus::Open,
                                    RequestStatus::Granted(_) => pb::AccessRequestStatus::Granted,
                                    RequestStatus::Declined => pb::AccessRequestStatus::Declined,
                                } as i32,
                                grant_id: match a.status {
                                    RequestStatus::Granted(g) => g.to_string(),
                                    _ => String::new(),
                                },
                            })
                            .collect(),
                    }
                },
            )
            .await
            .map_err(from_app_error)?;
        Ok(Response::new(response))
    }

    async fn erase_household(
        &self,
        request: Request<pb::EraseHouseholdRequest>,
    ) -> Answer<pb::EraseHouseholdResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let result = self
            .execute(&calling, id, r.options, Command::EraseHousehold)
            .await?;
        Ok(Response::new(pb::EraseHouseholdResponse {
            result: Some(result),
        }))
    }

    async fn get_caller(
        &self,
        request: Request<pb::GetCallerRequest>,
    ) -> Answer<pb::GetCallerResponse> {
        let (calling, _) = split(request)?;
        let Calling::Caller(caller) = calling else {
            return Err(Status::failed_precondition(
                "authentication is switched off: there is no caller",
            ));
        };
        let p = &caller.principal;
        Ok(Response::new(pb::GetCallerResponse {
            identity: Some(identity_to_proto(&p.identity)),
            role: p.role.to_proto(),
            name: p.name.clone().unwrap_or_default(),
            organisation_id: p.organisation_claim().unwrap_or_default().to_owned(),
            client_id: p.client_id.clone().unwrap_or_default(),
            acting_for: p.acting_for.as_ref().map(identity_to_proto),
        }))
    }
}
