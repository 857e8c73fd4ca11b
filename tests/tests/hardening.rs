//! What an independent client found wrong, against the real `naast serve --dev`: request ids
//! reused for another command, bodies that are not protobuf, errors that echo huge values, the
//! nil UUID as an id, and what a caller without access can learn from `RequestAccess`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_proto::pb;
use naast_proto::pb::consent_service_client::ConsentServiceClient;
use naast_proto::pb::household_service_client::HouseholdServiceClient;
use naast_tests::Server;
use tonic::Code;
use tonic_types::StatusExt;

type Api = HouseholdServiceClient<naast_proto::client::Signed>;

fn options(request_id: &str) -> Option<pb::CommandOptions> {
    Some(pb::CommandOptions {
        request_id: request_id.into(),
        ..Default::default()
    })
}

fn bad_field(status: &tonic::Status) -> String {
    status
        .get_details_bad_request()
        .and_then(|b| b.field_violations.first().map(|v| v.field.clone()))
        .unwrap_or_default()
}

async fn goals(api: &mut Api, household: &str) -> Vec<pb::Goal> {
    api.get_household(pb::GetHouseholdRequest {
        household_id: household.into(),
        min_position: 0,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .household
    .unwrap()
    .goals
}

#[tokio::test]
async fn a_request_id_answers_only_a_retry_of_the_same_command_by_the_same_caller() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut family = HouseholdServiceClient::new(server.signed("ouder").await);
    let (home, client, _) = naast_tests::household_with_client(&mut family, "Familie Visser").await;
    let (other_home, other_client, _) =
        naast_tests::household_with_client(&mut family, "Familie de Wit").await;

    // A note under request id R, without a note id: a retry answers the same, naming the same
    // note (the id is derived from the request), and writes nothing.
    let r = uuid::Uuid::now_v7().to_string();
    let note = |household: &str| pb::CreateNoteRequest {
        household_id: household.into(),
        options: options(&r),
        text: "Gesprek met de school over vervoer.".into(),
        ..Default::default()
    };
    let first = family.create_note(note(&home)).await.unwrap().into_inner();
    let retry = family.create_note(note(&home)).await.unwrap().into_inner();
    assert!(!first.result.unwrap().replayed);
    assert!(retry.result.unwrap().replayed);
    assert_eq!(
        first.note_id, retry.note_id,
        "a retry names what the first try made"
    );

    // The same R on another command is no retry: refused, and no goal is made.
    let goal = |household: &str, owner: &str| pb::CreateGoalRequest {
        household_id: household.into(),
        options: options(&r),
        owner_member_id: owner.into(),
        title: "Zelfstandig reizen naar de dagbesteding".into(),
        life_domains: vec![pb::LifeDomain::DaytimeActivitiesAndWork as i32],
        ..Default::default()
    };
    let same_household = family.create_goal(goal(&home, &client)).await.unwrap_err();
    assert_eq!(
        same_household.code(),
        Code::AlreadyExists,
        "{same_household:?}"
    );
    assert_eq!(bad_field(&same_household), "options.request_id");
    assert!(
        goals(&mut family, &home).await.is_empty(),
        "no phantom goal"
    );

    // In another household: refused the same way, saying nothing about the first use.
    let other_household = family
        .create_goal(goal(&other_home, &other_client))
        .await
        .unwrap_err();
    assert_eq!(other_household.code(), Code::AlreadyExists);
    assert_eq!(other_household.message(), same_household.message());
    assert!(goals(&mut family, &other_home).await.is_empty());

    // A note with the same R but another text is another command too.
    let mut changed = note(&home);
    changed.text = "Iets anders.".into();
    let refused = family.create_note(changed).await.unwrap_err();
    assert_eq!(refused.code(), Code::AlreadyExists);

    // Callers who may not see the household (a supporter asking for access, and a provider
    // reusing the supporter's request id there) are answered alike whatever happened: a retry
    // names the same request, and nothing is filed twice or in another's name.
    let mut supporter = ConsentServiceClient::new(server.signed("ondersteuner").await);
    let mut provider = ConsentServiceClient::new(server.signed("zorgverlener").await);
    let asked = uuid::Uuid::now_v7().to_string();
    let ask = |options| pb::RequestAccessRequest {
        household_id: home.clone(),
        options,
        terms: Some(pb::GrantTerms {
            scopes: vec![pb::AccessScope::ReadTimeline as i32],
            ..Default::default()
        }),
        reason: "meedenken".into(),
        ..Default::default()
    };
    let first = supporter
        .request_access(ask(options(&asked)))
        .await
        .unwrap()
        .into_inner();
    let retry = supporter
        .request_access(ask(options(&asked)))
        .await
        .unwrap()
        .into_inner();
    let reused = provider
        .request_access(ask(options(&asked)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.access_request_id, retry.access_request_id);
    let nothing = Some(pb::CommandResult {
        revision: 0,
        position: 0,
        replayed: false,
    });
    assert_eq!(
        (&first.result, &retry.result, &reused.result),
        (&nothing, &nothing, &nothing)
    );
    let requests = ConsentServiceClient::new(server.signed("ouder").await)
        .list_access_grants(pb::ListAccessGrantsRequest {
            household_id: home.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .requests;
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].access_request_id, first.access_request_id);
    assert!(format!("{:?}", requests[0].requester).contains("ondersteuner"));
}

#[tokio::test]
async fn huge_values_are_quoted_short_and_the_nil_uuid_names_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut family = HouseholdServiceClient::new(server.signed("ouder").await);
    let (home, _, _) = naast_tests::household_with_client(&mut family, "Familie Smit").await;

    // A 1 MB household id and a 10,000-character member id: the real error, small.
    let huge = "x".repeat(1024 * 1024);
    let refused = family
        .get_household(pb::GetHouseholdRequest {
            household_id: huge.clone(),
            min_position: 0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{}", refused.code());
    assert_eq!(bad_field(&refused), "household_id");
    assert!(refused.message().len() < 300, "{}", refused.message().len());
    let long = "7".repeat(10_000);
    let refused = family
        .update_member(pb::UpdateMemberRequest {
            household_id: home.clone(),
            member_id: long,
            details: Some(pb::MemberDetails {
                name: "Noor".into(),
                role: pb::MemberRole::Client as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(bad_field(&refused), "member_id");
    assert!(
        refused.message().contains("10000 characters"),
        "{refused:?}"
    );
    assert!(refused.details().len() < 1_000);

    // The nil UUID, wherever an id is given, is refused naming the field; nothing is written.
    let nil = uuid::Uuid::nil().to_string();
    let refused = family
        .create_note(pb::CreateNoteRequest {
            household_id: home.clone(),
            note_id: nil.clone(),
            text: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(bad_field(&refused), "note_id");
    let refused = family
        .create_household(pb::CreateHouseholdRequest {
            household_id: nil.clone(),
            name: "Nul".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_field(&refused), "household_id");
    let refused = family
        .create_note(pb::CreateNoteRequest {
            household_id: home.clone(),
            options: options(&nil),
            text: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_field(&refused), "options.request_id");
    let timeline = family
        .list_timeline_entries(pb::ListTimelineEntriesRequest {
            household_id: home,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        timeline
            .entries
            .iter()
            .all(|e| e.kind != pb::TimelineEntryKind::Note as i32),
        "no note was written"
    );
}

/// Sends raw bytes as a request body: the only way to give the server something that is not
/// protobuf.
#[derive(Clone, Default)]
struct RawCodec;

struct RawEncoder;
struct RawDecoder;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        buf: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(buf, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        buf: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        Ok(Some(buf.copy_to_bytes(buf.remaining()).to_vec()))
    }
}

#[tokio::test]
async fn a_body_that_is_not_protobuf_is_the_callers_fault() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut family = HouseholdServiceClient::new(server.signed("ouder").await);
    let (home, _, _) = naast_tests::household_with_client(&mut family, "Familie Mulder").await;

    // Valid prefix: field 1 (household_id) as a string, then each kind of breakage.
    let mut household_field = vec![0x0a, home.len() as u8];
    household_field.extend_from_slice(home.as_bytes());
    let with = |tail: &[u8]| {
        let mut body = household_field.clone();
        body.extend_from_slice(tail);
        body
    };
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("ff ff ff ff", vec![0xff, 0xff, 0xff, 0xff]),
        ("truncated varint", with(&[0x10, 0x80])),
        ("length past the end", with(&[0x2a, 0x20, b'a'])),
        ("wire type 7", with(&[0x2f])),
        ("invalid UTF-8 in a string", {
            let mut b = with(&[]);
            b.extend_from_slice(&[0x2a, 0x02, 0xc3, 0x28]); // CreateNote.text
            b
        }),
    ];
    let calls = [
        ("/naast.v1.HouseholdService/CreateNote", false),
        ("/naast.v1.HouseholdService/ListTimelineEntries", false),
        ("/naast.v1.ConsentService/ListAccessGrants", false),
        ("/naast.v1.HouseholdService/SubscribeTimeline", true),
    ];
    for (path, streaming) in calls {
        for (what, body) in &bodies {
            let mut grpc = tonic::client::Grpc::new(server.signed("ouder").await);
            grpc.ready().await.unwrap();
            let route = tonic::codegen::http::uri::PathAndQuery::from_static(path);
            let status = if streaming {
                grpc.server_streaming(tonic::Request::new(body.clone()), route, RawCodec)
                    .await
                    .map(|_| ())
            } else {
                grpc.unary(tonic::Request::new(body.clone()), route, RawCodec)
                    .await
                    .map(|_| ())
            };
            match status {
                // Some breakages only break some messages (a string field that the method's
                // message does not have is skipped as unknown); those must then answer as for
                // the valid part, never INTERNAL.
                Ok(()) => assert!(
                    what.contains("UTF-8") && !path.contains("CreateNote"),
                    "{path} accepted {what}"
                ),
                Err(status) => {
                    assert_ne!(
                        status.code(),
                        Code::Internal,
                        "{path} with {what}: {status:?}"
                    );
                    if !what.contains("UTF-8") || path.contains("CreateNote") {
                        assert_eq!(
                            status.code(),
                            Code::InvalidArgument,
                            "{path} with {what}: {status:?}"
                        );
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn a_request_for_access_tells_a_stranger_nothing_about_the_household() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut family = HouseholdServiceClient::new(server.signed("ouder").await);
    let (home, _, _) = naast_tests::household_with_client(&mut family, "Familie Jansen").await;
    let mut family_consent = ConsentServiceClient::new(server.signed("ouder").await);
    let mut supporter = ConsentServiceClient::new(server.signed("ondersteuner").await);
    let mut provider = ConsentServiceClient::new(server.signed("zorgverlener").await);
    let ask = |household: &str, request: &str| pb::RequestAccessRequest {
        household_id: household.into(),
        access_request_id: request.into(),
        terms: Some(pb::GrantTerms {
            scopes: vec![pb::AccessScope::ReadTimeline as i32],
            ..Default::default()
        }),
        reason: "meedenken".into(),
        ..Default::default()
    };

    // A real household and a made-up one: the same answer, with nothing about the household.
    let real_request = uuid::Uuid::now_v7().to_string();
    let real = supporter
        .request_access(ask(&home, &real_request))
        .await
        .unwrap()
        .into_inner();
    let made_up_household = uuid::Uuid::now_v7().to_string();
    let made_up_request = uuid::Uuid::now_v7().to_string();
    let made_up = supporter
        .request_access(ask(&made_up_household, &made_up_request))
        .await
        .unwrap()
        .into_inner();
    let result = |r: &pb::RequestAccessResponse| r.result.unwrap();
    assert_eq!(result(&real), result(&made_up));
    assert_eq!(
        result(&real),
        pb::CommandResult {
            revision: 0,
            position: 0,
            replayed: false
        }
    );
    assert_eq!(made_up.access_request_id, made_up_request);

    // Someone else using the supporter's request id: answered alike, and not filed.
    let copied = provider
        .request_access(ask(&home, &real_request))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(result(&copied), result(&made_up));

    // The family sees the one real request, from the supporter.
    let listed = family_consent
        .list_access_grants(pb::ListAccessGrantsRequest {
            household_id: home.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.requests.len(), 1, "{:?}", listed.requests);
    assert_eq!(listed.requests[0].access_request_id, real_request);
    let requester = listed.requests[0].requester.clone().unwrap();
    assert!(
        format!("{requester:?}").contains("ondersteuner"),
        "{requester:?}"
    );
}

#[tokio::test]
async fn every_access_that_concerns_a_household_is_in_its_access_log() {
    use naast_proto::pb::audit_service_client::AuditServiceClient;
    use naast_proto::pb::event_log_service_client::EventLogServiceClient;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut family = HouseholdServiceClient::new(server.signed("ouder").await);
    let (home, _, _) = naast_tests::household_with_client(&mut family, "Familie Kok").await;

    // The family's own command: its record carries the command's request id.
    let request = uuid::Uuid::now_v7().to_string();
    family
        .create_note(pb::CreateNoteRequest {
            household_id: home.clone(),
            options: options(&request),
            text: "Afspraak bij de huisarts".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    // The raw log, by an administrator and by a supporter, naming the household's stream; an
    // administrator searching the audit log for the household.
    let stream = format!("household-{home}");
    let mut admin_log = EventLogServiceClient::new(server.signed("beheerder").await);
    let mut supporter_log = EventLogServiceClient::new(server.signed("ondersteuner").await);
    let read = |stream: &str| pb::ListStreamEventsRequest {
        stream_id: stream.into(),
        ..Default::default()
    };
    let refused = admin_log
        .list_stream_events(read(&stream))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let refused = supporter_log
        .list_stream_events(read(&stream))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let refused = admin_log
        .append_events(pb::AppendEventsRequest {
            stream_id: stream.clone(),
            events: vec![pb::NewEvent {
                event_type: "NoteAdded".into(),
                payload: b"{}".to_vec(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    let mut admin_audit = AuditServiceClient::new(server.signed("beheerder").await);
    admin_audit
        .search_audit_log(pb::SearchAuditLogRequest {
            household_id: home.clone(),
            ..Default::default()
        })
        .await
        .unwrap();

    let mut family_audit = AuditServiceClient::new(server.signed("ouder").await);
    let log = family_audit
        .list_access_log(pb::ListAccessLogRequest {
            household_id: home.clone(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    let of = |method: &str, subject: &str| {
        log.iter()
            .filter(|r| {
                r.operation.ends_with(method)
                    && r.user.as_ref().is_some_and(|u| u.subject == subject)
            })
            .count()
    };
    assert_eq!(of("/ListStreamEvents", "dev-beheerder"), 1, "{log:#?}");
    assert_eq!(of("/ListStreamEvents", "dev-ondersteuner"), 1);
    assert_eq!(of("/AppendEvents", "dev-beheerder"), 1);
    assert_eq!(of("/SearchAuditLog", "dev-beheerder"), 1);
    let note = log
        .iter()
        .find(|r| r.operation.ends_with("/CreateNote"))
        .unwrap();
    assert_eq!(note.request_id, request);
}

fn backdated(day: &str) -> Option<pb::CommandOptions> {
    Some(pb::CommandOptions {
        effective_date: day.into(),
        ..Default::default()
    })
}

#[tokio::test]
async fn the_timeline_reads_by_day_and_a_past_day_shows_what_was_known_then() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut family = HouseholdServiceClient::new(server.signed("ouder").await);
    let (home, client, _) = naast_tests::household_with_client(&mut family, "Familie Dekker").await;

    // Recorded today: a note about today; then, late, a note about a day last winter.
    let note = |text: &str, options| pb::CreateNoteRequest {
        household_id: home.clone(),
        options,
        text: text.into(),
        ..Default::default()
    };
    family
        .create_note(note("vandaag besproken", None))
        .await
        .unwrap();
    family
        .create_note(note(
            "nagekomen: gesprek in januari",
            backdated("2026-01-15"),
        ))
        .await
        .unwrap();
    let page = |token: &str, size| pb::ListTimelineEntriesRequest {
        household_id: home.clone(),
        page_size: size,
        page_token: token.into(),
        ..Default::default()
    };
    let all = family
        .list_timeline_entries(page("", 100))
        .await
        .unwrap()
        .into_inner()
        .entries;
    let dates: Vec<&str> = all.iter().map(|e| e.date.as_str()).collect();
    let mut sorted = dates.clone();
    sorted.sort_unstable();
    assert_eq!(dates, sorted, "entries by day: {dates:?}");
    let late = all
        .iter()
        .position(|e| e.summary.contains("januari"))
        .unwrap();
    let today = all
        .iter()
        .position(|e| e.summary.contains("vandaag"))
        .unwrap();
    assert!(late < today);
    // Page by page, the same order, each entry once.
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let got = family
            .list_timeline_entries(page(&token, 1))
            .await
            .unwrap()
            .into_inner();
        paged.extend(got.entries);
        if got.next_page_token.is_empty() {
            break;
        }
        token = got.next_page_token;
    }
    assert_eq!(paged, all);
    // A date range starts at its first day.
    let january = family
        .list_timeline_entries(pb::ListTimelineEntriesRequest {
            household_id: home.clone(),
            start_date: "2026-01-01".into(),
            end_date: "2026-01-31".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(january.len(), 1, "{january:?}");

    // An agreement proposed on 10 January and accepted on 1 February, both recorded late.
    let provider = family
        .create_contact(pb::CreateContactRequest {
            household_id: home.clone(),
            details: Some(pb::ContactDetails {
                kind: pb::ContactKind::CareProvider as i32,
                name: "Zorggroep Oost".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .contact_id;
    let agreement = family
        .propose_agreement(pb::ProposeAgreementRequest {
            household_id: home.clone(),
            options: backdated("2026-01-10"),
            terms: Some(pb::AgreementTerms {
                title: "logeeropvang één weekend per maand".into(),
                parties: vec![
                    pb::Party {
                        party: Some(pb::party::Party::MemberId(client.clone())),
                    },
                    pb::Party {
                        party: Some(pb::party::Party::ContactId(provider.clone())),
                    },
                ],
                responsible_contact_id: provider,
                funding_domain: pb::FundingDomain::Wlz as i32,
                start_date: "2026-03-01".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .agreement_id;
    family
        .accept_agreement(pb::AcceptAgreementRequest {
            household_id: home.clone(),
            options: backdated("2026-02-01"),
            agreement_id: agreement.clone(),
        })
        .await
        .unwrap();
    let phase_on = |day: &'static str| {
        let mut api = family.clone();
        let home = home.clone();
        async move {
            api.list_agreements(pb::ListAgreementsRequest {
                household_id: home,
                as_of_date: day.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .agreements
            .iter()
            .map(|a| pb::AgreementPhase::try_from(a.phase).unwrap())
            .collect::<Vec<_>>()
        }
    };
    assert_eq!(phase_on("2026-01-05").await, vec![], "not known yet");
    assert_eq!(
        phase_on("2026-01-20").await,
        vec![pb::AgreementPhase::Proposed],
        "accepted only later"
    );
    assert_eq!(
        phase_on("2026-02-15").await,
        vec![pb::AgreementPhase::Upcoming]
    );
    assert_eq!(
        phase_on("2026-03-15").await,
        vec![pb::AgreementPhase::Active]
    );
}

#[tokio::test]
async fn a_stranger_cannot_tell_a_real_household_from_a_made_up_one_by_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut family = HouseholdServiceClient::new(server.signed("ouder").await);
    let (home, _, _) = naast_tests::household_with_client(&mut family, "Familie Echt").await;
    let made_up = uuid::Uuid::now_v7().to_string();
    let mut provider = ConsentServiceClient::new(server.signed("zorgverlener").await);
    let ask = |household: &str, reason: &str, options: Option<pb::CommandOptions>| {
        pb::RequestAccessRequest {
            household_id: household.into(),
            options,
            terms: Some(pb::GrantTerms {
                scopes: vec![pb::AccessScope::ReadTimeline as i32],
                ..Default::default()
            }),
            reason: reason.into(),
            ..Default::default()
        }
    };
    let request = uuid::Uuid::now_v7().to_string();
    let with_revision = Some(pb::CommandOptions {
        expected_revision: Some(0),
        ..Default::default()
    });
    // The same request, its retry, a retry changed, a bad reason, an expected revision: each
    // answered the same for the real household as for the made-up one.
    let cases: Vec<(&str, Option<pb::CommandOptions>)> = vec![
        ("meedenken", options(&request)),
        ("meedenken", options(&request)),
        ("iets anders", options(&request)),
        ("", None),
        ("meedenken", with_revision),
    ];
    for (reason, opts) in cases {
        let real = provider
            .request_access(ask(&home, reason, opts.clone()))
            .await;
        let fake = provider.request_access(ask(&made_up, reason, opts)).await;
        let shape = |answer: &Result<tonic::Response<pb::RequestAccessResponse>, tonic::Status>| {
            match answer {
                Ok(r) => format!("ok {:?}", r.get_ref().result),
                Err(s) => format!("{:?} {}", s.code(), s.message()),
            }
        };
        assert_eq!(shape(&real), shape(&fake), "reason {reason:?}");
    }
    // And reusing the request id on a household of one's own reveals nothing either.
    let mut own = HouseholdServiceClient::new(server.signed("ouder").await);
    let (mine, _, _) = naast_tests::household_with_client(&mut own, "Familie Eigen").await;
    own.create_note(pb::CreateNoteRequest {
        household_id: mine,
        options: options(&request),
        text: "eigen notitie".into(),
        ..Default::default()
    })
    .await
    .unwrap();
}
