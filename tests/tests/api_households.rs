//! The household API over gRPC against the real `naast serve` process: scenario 2 (the
//! 16-year-old who turns 18: Jeugdwet ends, Wmo takes over, same coach and goals), the unified
//! timeline with its filters, idempotent retries, conflicts, and a table of bad requests.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_proto::pb;
use naast_proto::pb::household_service_client::HouseholdServiceClient;
use naast_tests::Server;
use tonic::Code;
use tonic_types::StatusExt;

type Api = HouseholdServiceClient<naast_proto::client::Signed>;

/// The parent persona registers every household here, so it owns them and may do everything.
async fn api(server: &Server) -> Api {
    HouseholdServiceClient::new(server.signed("ouder").await)
}

fn member(
    name: &str,
    role: pb::MemberRole,
    relation: pb::Relation,
    birth: &str,
) -> Option<pb::MemberDetails> {
    Some(pb::MemberDetails {
        name: name.into(),
        role: role as i32,
        relation: relation as i32,
        birth_date: birth.into(),
    })
}

struct Scenario {
    household: String,
    teen: String,
    mother: String,
    coach: String,
    provider: String,
    goal: String,
    agreement: String,
}

/// Scenario 2 up to the 18th birthday.
async fn scenario_two(api: &mut Api) -> Scenario {
    let household = api
        .create_household(pb::CreateHouseholdRequest {
            name: "Familie Bakker".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .household_id;
    let add = |details| pb::CreateMemberRequest {
        household_id: household.clone(),
        details,
        ..Default::default()
    };
    let teen = api
        .create_member(add(member(
            "Sam",
            pb::MemberRole::Client,
            pb::Relation::Unspecified,
            "2008-03-14",
        )))
        .await
        .unwrap()
        .into_inner()
        .member_id;
    let mother = api
        .create_member(add(member(
            "Ingrid",
            pb::MemberRole::LegalRepresentative,
            pb::Relation::Parent,
            "",
        )))
        .await
        .unwrap()
        .into_inner()
        .member_id;
    api.create_member(add(member(
        "Lotte",
        pb::MemberRole::Relative,
        pb::Relation::Sibling,
        "2010-06-01",
    )))
    .await
    .unwrap();
    let contact = |kind: pb::ContactKind, name: &str, supporter: pb::SupporterKind| {
        pb::CreateContactRequest {
            household_id: household.clone(),
            details: Some(pb::ContactDetails {
                kind: kind as i32,
                name: name.into(),
                supporter_kind: supporter as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    };
    let coach = api
        .create_contact(contact(
            pb::ContactKind::Supporter,
            "Mirjam",
            pb::SupporterKind::LifeCourseCoach,
        ))
        .await
        .unwrap()
        .into_inner()
        .contact_id;
    let provider = api
        .create_contact(contact(
            pb::ContactKind::CareProvider,
            "Jeugdzorg Oost",
            pb::SupporterKind::Unspecified,
        ))
        .await
        .unwrap()
        .into_inner()
        .contact_id;
    let goal = api
        .create_goal(pb::CreateGoalRequest {
            household_id: household.clone(),
            owner_member_id: teen.clone(),
            title: "structuur in de week".into(),
            life_domains: vec![
                pb::LifeDomain::SelfDetermination as i32,
                pb::LifeDomain::Education as i32,
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .goal_id;
    let agreement = api
        .propose_agreement(pb::ProposeAgreementRequest {
            household_id: household.clone(),
            terms: Some(pb::AgreementTerms {
                title: "begeleiding twee middagen per week".into(),
                parties: vec![
                    pb::Party {
                        party: Some(pb::party::Party::MemberId(teen.clone())),
                    },
                    pb::Party {
                        party: Some(pb::party::Party::ContactId(provider.clone())),
                    },
                ],
                responsible_contact_id: provider.clone(),
                funding_domain: pb::FundingDomain::Jeugdwet as i32,
                start_date: "2025-09-01".into(),
                frequency: "2 middagen per week".into(),
                goal_ids: vec![goal.clone()],
                ..Default::default()
            }),
            // Entered when the family joined, about the summer it was agreed.
            options: Some(pb::CommandOptions {
                effective_date: "2025-08-15".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .agreement_id;
    api.accept_agreement(pb::AcceptAgreementRequest {
        household_id: household.clone(),
        agreement_id: agreement.clone(),
        options: Some(pb::CommandOptions {
            effective_date: "2025-08-20".into(),
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    Scenario {
        household,
        teen,
        mother,
        coach,
        provider,
        goal,
        agreement,
    }
}

#[tokio::test]
async fn turning_18_moves_care_from_jeugdwet_to_wmo_on_one_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut api = api(&server).await;
    let s = scenario_two(&mut api).await;
    let mut live = api
        .subscribe_timeline(pb::SubscribeTimelineRequest {
            household_id: s.household.clone(),
            start_revision: None,
        })
        .await
        .unwrap()
        .into_inner();
    let transition = api
        .record_funding_transition(pb::RecordFundingTransitionRequest {
            household_id: s.household.clone(),
            member_id: s.teen.clone(),
            from_funding_domain: pb::FundingDomain::Jeugdwet as i32,
            to_funding_domain: pb::FundingDomain::Wmo as i32,
            date: "2026-03-14".into(),
            reason: "18 jaar".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    // A live subscriber sees the transition and the agreement it carries over as they are
    // recorded, each under the day the transition names.
    for expected in ["FundingTransitionRecorded", "AgreementCarriedOver"] {
        let entry = tokio::time::timeout(std::time::Duration::from_secs(30), live.message())
            .await
            .expect("a live entry within 30 s")
            .unwrap()
            .unwrap()
            .entry
            .unwrap();
        assert_eq!(
            (entry.event_type.as_str(), entry.date.as_str()),
            (expected, "2026-03-14")
        );
    }

    let household = api
        .get_household(pb::GetHouseholdRequest {
            household_id: s.household.clone(),
            min_position: transition.position,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .household
        .unwrap();
    assert_eq!(household.revision, transition.revision);
    let agreement = household
        .agreements
        .iter()
        .find(|a| a.agreement_id == s.agreement)
        .unwrap();
    let terms = agreement.terms.as_ref().unwrap();
    assert_eq!(
        terms.funding_domain,
        pb::FundingDomain::Wmo as i32,
        "the agreement carries on under the Wmo"
    );
    assert_eq!(agreement.status, pb::AgreementStatus::Accepted as i32);
    assert_eq!(terms.goal_ids, vec![s.goal.clone()]);
    assert_eq!(household.goals[0].status, pb::GoalStatus::Active as i32);
    assert!(
        household.contacts.iter().any(|c| c.contact_id == s.coach),
        "the same coach"
    );
    assert_eq!(household.members.len(), 3);

    let timeline = |filter: pb::ListTimelineEntriesRequest| {
        let mut api = api.clone();
        let household = s.household.clone();
        async move {
            api.list_timeline_entries(pb::ListTimelineEntriesRequest {
                household_id: household,
                ..filter
            })
            .await
            .unwrap()
            .into_inner()
        }
    };
    let all = timeline(Default::default()).await;
    assert_eq!(
        all.entries.len() as u64,
        transition.revision + 1,
        "one entry per event"
    );
    // By the day each entry concerns, then in the order recorded.
    let order: Vec<(&str, u64)> = all
        .entries
        .iter()
        .map(|e| (e.date.as_str(), e.revision))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "by day: {order:?}");
    let at = all
        .entries
        .iter()
        .position(|e| e.event_type == "FundingTransitionRecorded")
        .unwrap();
    let transition_day: Vec<&str> = all.entries[at..at + 2]
        .iter()
        .map(|e| e.event_type.as_str())
        .collect();
    assert_eq!(
        transition_day,
        ["FundingTransitionRecorded", "AgreementCarriedOver"]
    );
    let moved = &all.entries[at];
    assert_eq!(moved.date, "2026-03-14");
    assert!(
        moved.summary.contains("Sam")
            && moved.summary.contains("Jeugdwet")
            && moved.summary.contains("Wmo"),
        "{}",
        moved.summary
    );
    assert_eq!(
        moved.funding_domains,
        vec![
            pb::FundingDomain::Jeugdwet as i32,
            pb::FundingDomain::Wmo as i32
        ]
    );

    let wmo = timeline(pb::ListTimelineEntriesRequest {
        funding_domains: vec![pb::FundingDomain::Wmo as i32],
        ..Default::default()
    })
    .await;
    assert_eq!(
        wmo.entries.len(),
        2,
        "the transition and the carried agreement"
    );
    let jeugdwet = timeline(pb::ListTimelineEntriesRequest {
        funding_domains: vec![pb::FundingDomain::Jeugdwet as i32],
        ..Default::default()
    })
    .await;
    assert!(
        jeugdwet
            .entries
            .iter()
            .any(|e| e.event_type == "AgreementProposed")
    );
    let goals = timeline(pb::ListTimelineEntriesRequest {
        kinds: vec![pb::TimelineEntryKind::Goal as i32],
        ..Default::default()
    })
    .await;
    assert_eq!(goals.entries.len(), 1);
    let education = timeline(pb::ListTimelineEntriesRequest {
        life_domains: vec![pb::LifeDomain::Education as i32],
        ..Default::default()
    })
    .await;
    assert!(
        education
            .entries
            .iter()
            .all(|e| e.life_domains.contains(&(pb::LifeDomain::Education as i32)))
    );
    assert!(!education.entries.is_empty());
    let mothers = timeline(pb::ListTimelineEntriesRequest {
        member_id: s.mother.clone(),
        ..Default::default()
    })
    .await;
    assert_eq!(
        mothers.entries.len(),
        1,
        "only her own arrival concerns the mother"
    );
    let later = timeline(pb::ListTimelineEntriesRequest {
        start_date: "2026-01-01".into(),
        ..Default::default()
    })
    .await;
    assert!(
        later
            .entries
            .iter()
            .all(|e| e.date.as_str() >= "2026-01-01")
    );

    // Paging walks the same entries.
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = timeline(pb::ListTimelineEntriesRequest {
            page_size: 3,
            page_token: token.clone(),
            ..Default::default()
        })
        .await;
        assert!(page.entries.len() <= 3);
        paged.extend(page.entries.into_iter().map(|e| e.position));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        paged,
        all.entries.iter().map(|e| e.position).collect::<Vec<_>>()
    );
    let _ = (&s.provider,);
}

#[tokio::test]
async fn a_retried_command_acts_once_and_a_stale_one_is_aborted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut api = api(&server).await;
    let s = scenario_two(&mut api).await;
    let request = pb::CreateNoteRequest {
        household_id: s.household.clone(),
        options: Some(pb::CommandOptions {
            request_id: "01937a4e-0000-7000-8000-00000000a001".into(),
            ..Default::default()
        }),
        text: "moeder is gestopt met werken".into(),
        about_member_id: s.mother.clone(),
        ..Default::default()
    };
    let first = api
        .create_note(request.clone())
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    let again = api
        .create_note(request)
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    assert!(again.replayed && !first.replayed);
    assert_eq!(
        (again.revision, again.position),
        (first.revision, first.position)
    );

    let stale = api
        .create_note(pb::CreateNoteRequest {
            household_id: s.household.clone(),
            options: Some(pb::CommandOptions {
                expected_revision: Some(first.revision - 1),
                ..Default::default()
            }),
            text: "x".into(),
            ..Default::default()
        })
        .await
        .expect_err("stale revision");
    assert_eq!(stale.code(), Code::Aborted);
    let info = stale.get_details_error_info().unwrap();
    assert_eq!(info.metadata["actual_revision"], first.revision.to_string());
    let household = api
        .get_household(pb::GetHouseholdRequest {
            household_id: s.household.clone(),
            min_position: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .household
        .unwrap();
    assert_eq!(
        household.revision, first.revision,
        "nothing written by the retry or the stale command"
    );
}

/// Each bad request: the code, and for field errors the field named in a BadRequest.
#[tokio::test]
async fn bad_requests_get_the_right_code_and_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut api = api(&server).await;
    let s = scenario_two(&mut api).await;
    let before = api
        .get_household(pb::GetHouseholdRequest {
            household_id: s.household.clone(),
            min_position: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .household
        .unwrap()
        .revision;
    let h = || s.household.clone();
    let unknown = "01937a4e-0000-7000-8000-00000000ffff".to_owned();
    let good_terms = || pb::AgreementTerms {
        title: "logeeropvang".into(),
        parties: vec![pb::Party {
            party: Some(pb::party::Party::MemberId(s.teen.clone())),
        }],
        funding_domain: pb::FundingDomain::Wlz as i32,
        start_date: "2026-01-01".into(),
        ..Default::default()
    };
    let propose = |f: &dyn Fn(&mut pb::AgreementTerms)| {
        let mut terms = good_terms();
        f(&mut terms);
        pb::ProposeAgreementRequest {
            household_id: h(),
            terms: Some(terms),
            ..Default::default()
        }
    };
    let goal = |f: &dyn Fn(&mut pb::CreateGoalRequest)| {
        let mut r = pb::CreateGoalRequest {
            household_id: h(),
            owner_member_id: s.teen.clone(),
            title: "zelf koken".into(),
            life_domains: vec![pb::LifeDomain::Housing as i32],
            ..Default::default()
        };
        f(&mut r);
        r
    };
    let mut results: Vec<(&str, Result<(), tonic::Status>, Code, &str)> = Vec::new();
    macro_rules! case {
        ($what:expr, $call:expr, $code:expr, $field:expr) => {
            results.push(($what, $call.await.map(|_| ()), $code, $field));
        };
    }
    case!(
        "missing household id",
        api.create_note(pb::CreateNoteRequest {
            text: "x".into(),
            ..Default::default()
        }),
        Code::InvalidArgument,
        "household_id"
    );
    case!(
        "malformed household id",
        api.create_note(pb::CreateNoteRequest {
            household_id: "42".into(),
            text: "x".into(),
            ..Default::default()
        }),
        Code::InvalidArgument,
        "household_id"
    );
    case!(
        "unknown household",
        api.create_note(pb::CreateNoteRequest {
            household_id: unknown.clone(),
            text: "x".into(),
            ..Default::default()
        }),
        // Refused like a household the caller may not see: a refusal tells nothing about
        // which households exist.
        Code::PermissionDenied,
        ""
    );
    case!(
        "unknown household read",
        api.get_household(pb::GetHouseholdRequest {
            household_id: unknown.clone(),
            min_position: 0,
            ..Default::default()
        }),
        Code::PermissionDenied,
        ""
    );
    case!(
        "empty household name",
        api.create_household(pb::CreateHouseholdRequest {
            name: " ".into(),
            ..Default::default()
        }),
        Code::InvalidArgument,
        "name"
    );
    case!(
        "check-in rated 11",
        api.record_check_in(pb::RecordCheckInRequest {
            household_id: h(),
            member_id: s.teen.clone(),
            date: "2026-01-01".into(),
            rating: 11,
            ..Default::default()
        }),
        Code::InvalidArgument,
        "rating"
    );
    case!(
        "check-in rated far beyond a byte",
        api.record_check_in(pb::RecordCheckInRequest {
            household_id: h(),
            member_id: s.teen.clone(),
            date: "2026-01-01".into(),
            rating: 1_000_000,
            ..Default::default()
        }),
        Code::InvalidArgument,
        "rating"
    );
    case!(
        "check-in by someone not in the household",
        api.record_check_in(pb::RecordCheckInRequest {
            household_id: h(),
            member_id: s.teen.clone(),
            respondent_member_id: unknown.clone(),
            date: "2026-01-01".into(),
            rating: 6,
            ..Default::default()
        }),
        Code::NotFound,
        "respondent_member_id"
    );
    case!(
        "check-in threshold 0",
        api.set_check_in_threshold(pb::SetCheckInThresholdRequest {
            household_id: h(),
            threshold: 0,
            ..Default::default()
        }),
        Code::InvalidArgument,
        "threshold"
    );
    case!(
        "signals as of a malformed day",
        api.list_signals(pb::ListSignalsRequest {
            household_id: h(),
            as_of_date: "1 maart".into(),
            ..Default::default()
        }),
        Code::InvalidArgument,
        "as_of_date"
    );
    case!(
        "signals of an unknown kind",
        api.list_signals(pb::ListSignalsRequest {
            household_id: h(),
            kinds: vec![99],
            ..Default::default()
        }),
        Code::InvalidArgument,
        "kinds[0]"
    );
    case!(
        "household name too long",
        api.create_household(pb::CreateHouseholdRequest {
            name: "x".repeat(201),
            ..Default::default()
        }),
        Code::InvalidArgument,
        "name"
    );
    case!(
        "registered twice",
        api.create_household(pb::CreateHouseholdRequest {
            household_id: h(),
            name: "again".into(),
            ..Default::default()
        }),
        Code::AlreadyExists,
        "household_id"
    );
    case!(
        "member without details",
        api.create_member(pb::CreateMemberRequest {
            household_id: h(),
            ..Default::default()
        }),
        Code::InvalidArgument,
        "details"
    );
    case!(
        "member without role",
        api.create_member(pb::CreateMemberRequest {
            household_id: h(),
            details: member("Oma", pb::MemberRole::Unspecified, pb::Relation::Parent, ""),
            ..Default::default()
        }),
        Code::InvalidArgument,
        "details.role"
    );
    case!(
        "member with unknown role",
        api.create_member(pb::CreateMemberRequest {
            household_id: h(),
            details: Some(pb::MemberDetails {
                name: "Oma".into(),
                role: 77,
                ..Default::default()
            }),
            ..Default::default()
        }),
        Code::InvalidArgument,
        "details.role"
    );
    case!(
        "relative without relation",
        api.create_member(pb::CreateMemberRequest {
            household_id: h(),
            details: member(
                "Oma",
                pb::MemberRole::Relative,
                pb::Relation::Unspecified,
                ""
            ),
            ..Default::default()
        }),
        Code::InvalidArgument,
        "details.relation"
    );
    case!(
        "impossible birth date",
        api.create_member(pb::CreateMemberRequest {
            household_id: h(),
            details: member(
                "Oma",
                pb::MemberRole::Client,
                pb::Relation::Unspecified,
                "1950-02-30"
            ),
            ..Default::default()
        }),
        Code::InvalidArgument,
        "details.birth_date"
    );
    case!(
        "birth date in the future",
        api.create_member(pb::CreateMemberRequest {
            household_id: h(),
            details: member(
                "Baby",
                pb::MemberRole::Client,
                pb::Relation::Unspecified,
                "2199-01-01"
            ),
            ..Default::default()
        }),
        Code::InvalidArgument,
        "details.birth_date"
    );
    case!(
        "birth date out of range",
        api.create_member(pb::CreateMemberRequest {
            household_id: h(),
            details: member(
                "Oma",
                pb::MemberRole::Client,
                pb::Relation::Unspecified,
                "1850-01-01"
            ),
            ..Default::default()
        }),
        Code::InvalidArgument,
        "details.birth_date"
    );
    case!(
        "existing member id",
        api.create_member(pb::CreateMemberRequest {
            household_id: h(),
            member_id: s.teen.clone(),
            details: member("Sam", pb::MemberRole::Client, pb::Relation::Unspecified, ""),
            ..Default::default()
        }),
        Code::AlreadyExists,
        "member_id"
    );
    case!(
        "unknown member update",
        api.update_member(pb::UpdateMemberRequest {
            household_id: h(),
            member_id: unknown.clone(),
            details: member("X", pb::MemberRole::Client, pb::Relation::Unspecified, ""),
            ..Default::default()
        }),
        Code::NotFound,
        "member_id"
    );
    case!(
        "supporter without kind",
        api.create_contact(pb::CreateContactRequest {
            household_id: h(),
            details: Some(pb::ContactDetails {
                kind: pb::ContactKind::Supporter as i32,
                name: "X".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        Code::InvalidArgument,
        "details.supporter_kind"
    );
    case!(
        "contact without kind",
        api.create_contact(pb::CreateContactRequest {
            household_id: h(),
            details: Some(pb::ContactDetails {
                name: "X".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        Code::InvalidArgument,
        "details.kind"
    );
    case!(
        "goal without title",
        api.create_goal(goal(&|r| r.title.clear())),
        Code::InvalidArgument,
        "title"
    );
    case!(
        "goal title with control character",
        api.create_goal(goal(&|r| r.title = "a\u{1b}b".into())),
        Code::InvalidArgument,
        "title"
    );
    case!(
        "goal description too long",
        api.create_goal(goal(&|r| r.description = "x".repeat(4001))),
        Code::InvalidArgument,
        "description"
    );
    case!(
        "goal without life domain",
        api.create_goal(goal(&|r| r.life_domains.clear())),
        Code::InvalidArgument,
        "life_domains"
    );
    case!(
        "goal with unspecified life domain",
        api.create_goal(goal(&|r| r.life_domains.push(0))),
        Code::InvalidArgument,
        "life_domains[1]"
    );
    case!(
        "goal with unknown life domain",
        api.create_goal(goal(&|r| r.life_domains = vec![99])),
        Code::InvalidArgument,
        "life_domains[0]"
    );
    case!(
        "goal with a life domain twice",
        api.create_goal(goal(&|r| r
            .life_domains
            .push(pb::LifeDomain::Housing as i32))),
        Code::InvalidArgument,
        "life_domains[1]"
    );
    case!(
        "goal of an unknown member",
        api.create_goal(goal(&|r| r.owner_member_id = unknown.clone())),
        Code::NotFound,
        "owner_member_id"
    );
    case!(
        "goal in an unknown plan",
        api.create_goal(goal(&|r| r.plan_id = unknown.clone())),
        Code::NotFound,
        "plan_id"
    );
    case!(
        "progress on an unknown goal",
        api.note_goal_progress(pb::NoteGoalProgressRequest {
            household_id: h(),
            goal_id: unknown.clone(),
            date: "2026-01-01".into(),
            note: "x".into(),
            ..Default::default()
        }),
        Code::NotFound,
        "goal_id"
    );
    case!(
        "progress without date",
        api.note_goal_progress(pb::NoteGoalProgressRequest {
            household_id: h(),
            goal_id: s.goal.clone(),
            note: "x".into(),
            ..Default::default()
        }),
        Code::InvalidArgument,
        "date"
    );
    case!(
        "reopening an active goal",
        api.reopen_goal(pb::ReopenGoalRequest {
            household_id: h(),
            goal_id: s.goal.clone(),
            reason: "x".into(),
            ..Default::default()
        }),
        Code::FailedPrecondition,
        ""
    );
    case!(
        "agreement without terms",
        api.propose_agreement(pb::ProposeAgreementRequest {
            household_id: h(),
            ..Default::default()
        }),
        Code::InvalidArgument,
        "terms"
    );
    case!(
        "agreement ending before it starts",
        api.propose_agreement(propose(&|t| t.end_date = "2025-12-31".into())),
        Code::InvalidArgument,
        "terms.end_date"
    );
    case!(
        "agreement without funding domain",
        api.propose_agreement(propose(&|t| t.funding_domain = 0)),
        Code::InvalidArgument,
        "terms.funding_domain"
    );
    case!(
        "agreement with malformed start",
        api.propose_agreement(propose(&|t| t.start_date = "1-1-2026".into())),
        Code::InvalidArgument,
        "terms.start_date"
    );
    case!(
        "agreement without parties",
        api.propose_agreement(propose(&|t| t.parties.clear())),
        Code::InvalidArgument,
        "terms.parties"
    );
    case!(
        "agreement with an empty party",
        api.propose_agreement(propose(&|t| t.parties.push(pb::Party { party: None }))),
        Code::InvalidArgument,
        "terms.parties[1]"
    );
    case!(
        "agreement with an unknown party",
        api.propose_agreement(propose(&|t| t.parties.push(pb::Party {
            party: Some(pb::party::Party::ContactId(unknown.clone()))
        }))),
        Code::NotFound,
        "terms.parties[1]"
    );
    case!(
        "agreement for an unknown goal",
        api.propose_agreement(propose(&|t| t.goal_ids.push(unknown.clone()))),
        Code::NotFound,
        "terms.goal_ids[0]"
    );
    case!(
        "accepting an accepted agreement",
        api.accept_agreement(pb::AcceptAgreementRequest {
            household_id: h(),
            agreement_id: s.agreement.clone(),
            ..Default::default()
        }),
        Code::FailedPrecondition,
        ""
    );
    case!(
        "ending before the start",
        api.end_agreement(pb::EndAgreementRequest {
            household_id: h(),
            agreement_id: s.agreement.clone(),
            date: "2025-01-01".into(),
            reason: "x".into(),
            ..Default::default()
        }),
        Code::InvalidArgument,
        "date"
    );
    case!(
        "transition to the same domain",
        api.record_funding_transition(pb::RecordFundingTransitionRequest {
            household_id: h(),
            member_id: s.teen.clone(),
            from_funding_domain: 4,
            to_funding_domain: 4,
            date: "2026-03-14".into(),
            reason: "x".into(),
            ..Default::default()
        }),
        Code::InvalidArgument,
        "to_funding_domain"
    );
    case!(
        "malformed request id",
        api.create_note(pb::CreateNoteRequest {
            household_id: h(),
            options: Some(pb::CommandOptions {
                request_id: "retry-1".into(),
                ..Default::default()
            }),
            text: "x".into(),
            ..Default::default()
        }),
        Code::InvalidArgument,
        "options.request_id"
    );
    case!(
        "effective date in the future",
        api.create_note(pb::CreateNoteRequest {
            household_id: h(),
            options: Some(pb::CommandOptions {
                effective_date: "2199-01-01".into(),
                ..Default::default()
            }),
            text: "x".into(),
            ..Default::default()
        }),
        Code::InvalidArgument,
        "options.effective_date"
    );
    case!(
        "malformed effective date",
        api.create_note(pb::CreateNoteRequest {
            household_id: h(),
            options: Some(pb::CommandOptions {
                effective_date: "gisteren".into(),
                ..Default::default()
            }),
            text: "x".into(),
            ..Default::default()
        }),
        Code::InvalidArgument,
        "options.effective_date"
    );
    case!(
        "timeline page too large",
        api.list_timeline_entries(pb::ListTimelineEntriesRequest {
            household_id: h(),
            page_size: 1001,
            ..Default::default()
        }),
        Code::InvalidArgument,
        "page_size"
    );
    case!(
        "timeline with bad token",
        api.list_timeline_entries(pb::ListTimelineEntriesRequest {
            household_id: h(),
            page_token: "x1".into(),
            ..Default::default()
        }),
        Code::InvalidArgument,
        "page_token"
    );
    case!(
        "timeline ending before it starts",
        api.list_timeline_entries(pb::ListTimelineEntriesRequest {
            household_id: h(),
            start_date: "2026-02-01".into(),
            end_date: "2026-01-01".into(),
            ..Default::default()
        }),
        Code::InvalidArgument,
        "end_date"
    );
    case!(
        "timeline with unknown kind",
        api.list_timeline_entries(pb::ListTimelineEntriesRequest {
            household_id: h(),
            kinds: vec![42],
            ..Default::default()
        }),
        Code::InvalidArgument,
        "kinds[0]"
    );
    case!(
        "note too large for the wire",
        api.create_note(pb::CreateNoteRequest {
            household_id: h(),
            text: "x".repeat(6 * 1024 * 1024),
            ..Default::default()
        }),
        Code::ResourceExhausted,
        ""
    );

    assert!(results.len() >= 30);
    for (what, result, code, field) in results {
        let status = result.expect_err(what);
        assert_eq!(status.code(), code, "{what}: {status:?}");
        if !field.is_empty() {
            let bad = status
                .get_details_bad_request()
                .unwrap_or_else(|| panic!("{what}: no BadRequest in {status:?}"));
            assert_eq!(bad.field_violations[0].field, field, "{what}");
        }
    }
    let after = api
        .get_household(pb::GetHouseholdRequest {
            household_id: s.household.clone(),
            min_position: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .household
        .unwrap()
        .revision;
    assert_eq!(
        after, before,
        "nothing was written for any rejected command"
    );
}

async fn whole_timeline(api: &mut Api, household: &str) -> Vec<pb::TimelineEntry> {
    api.list_timeline_entries(pb::ListTimelineEntriesRequest {
        household_id: household.into(),
        page_size: 1000,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .entries
}

/// The timeline is a read model: after a kill, a restart and a full rebuild (`naast replay`) it
/// is what it was.
#[tokio::test]
async fn the_timeline_is_the_same_after_a_kill_a_restart_and_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let mut client = api(&server).await;
    let s = scenario_two(&mut client).await;
    let before = whole_timeline(&mut client, &s.household).await;
    assert!(before.len() >= 9);
    server.kill();

    let server = Server::start(dir.path());
    let mut client = api(&server).await;
    assert_eq!(whole_timeline(&mut client, &s.household).await, before);
    drop(server);

    let said = naast_tests::replay(dir.path());
    assert!(
        said.contains(&format!(
            "{} events projected",
            before.iter().map(|e| e.position).max().unwrap() + 1
        )),
        "{said}"
    );

    let server = Server::start(dir.path());
    let mut client = api(&server).await;
    assert_eq!(whole_timeline(&mut client, &s.household).await, before);
}

/// Writers add notes concurrently; a timeline subscriber sees every entry exactly once, in
/// revision order, first the stored ones then the live ones, those recorded about an earlier day
/// (which the timeline files under that day) as well. Racing commands that name the same
/// expected revision: one wins, the others are ABORTED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeline_subscriber_sees_every_concurrent_write_exactly_once() {
    const EARLIER_DAY: &str = "2025-02-14";
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut client = api(&server).await;
    let s = scenario_two(&mut client).await;
    let stored = whole_timeline(&mut client, &s.household).await.len() as u64;
    let mut from_start = client
        .subscribe_timeline(pb::SubscribeTimelineRequest {
            household_id: s.household.clone(),
            start_revision: Some(0),
        })
        .await
        .unwrap()
        .into_inner();
    let mut from_now = client
        .subscribe_timeline(pb::SubscribeTimelineRequest {
            household_id: s.household.clone(),
            start_revision: None,
        })
        .await
        .unwrap()
        .into_inner();
    let mut writers = Vec::new();
    for w in 0..4 {
        let mut client = client.clone();
        let household = s.household.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..15 {
                // The first writer records what happened on an earlier day.
                let options = (w == 0).then(|| pb::CommandOptions {
                    effective_date: EARLIER_DAY.into(),
                    ..Default::default()
                });
                client
                    .create_note(pb::CreateNoteRequest {
                        household_id: household.clone(),
                        options,
                        text: format!("notitie {w}.{i}"),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let total = stored + 60;
    for expected in 0..total {
        let entry = tokio::time::timeout(std::time::Duration::from_secs(30), from_start.message())
            .await
            .expect("an entry within 30 s")
            .unwrap()
            .unwrap()
            .entry
            .unwrap();
        assert_eq!(entry.revision, expected);
    }
    let mut earlier = 0;
    for expected in stored..total {
        let entry = from_now.message().await.unwrap().unwrap().entry.unwrap();
        assert_eq!(entry.revision, expected);
        assert_eq!(entry.kind, pb::TimelineEntryKind::Note as i32);
        earlier += usize::from(entry.date == EARLIER_DAY);
    }
    assert_eq!(earlier, 15, "the first writer's notes, each on its own day");

    let mut racers = Vec::new();
    for i in 0..8 {
        let mut client = client.clone();
        let household = s.household.clone();
        racers.push(tokio::spawn(async move {
            client
                .create_note(pb::CreateNoteRequest {
                    household_id: household,
                    options: Some(pb::CommandOptions {
                        expected_revision: Some(total - 1),
                        ..Default::default()
                    }),
                    text: format!("race {i}"),
                    ..Default::default()
                })
                .await
        }));
    }
    let mut wins = 0;
    for racer in racers {
        match racer.await.unwrap() {
            Ok(_) => wins += 1,
            Err(status) => assert_eq!(status.code(), Code::Aborted),
        }
    }
    assert_eq!(wins, 1);
    let unknown = client
        .subscribe_timeline(pb::SubscribeTimelineRequest {
            household_id: "01937a4e-0000-7000-8000-00000000ffff".into(),
            start_revision: None,
        })
        .await
        .expect_err("no such household");
    assert_eq!(unknown.code(), Code::PermissionDenied);
}

/// The current views: a plan with its goals and agreements, goals by life domain, agreements by
/// provider, funding domain and phase on a given day.
#[tokio::test]
async fn plans_goals_and_agreements_can_be_viewed_by_what_matters() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut client = api(&server).await;
    let s = scenario_two(&mut client).await;
    let h = || s.household.clone();
    let plan = client
        .create_plan(pb::CreatePlanRequest {
            household_id: h(),
            kind: pb::PlanKind::SupportPlan as i32,
            title: "ondersteuningsplan".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .plan_id;
    let planned = client
        .create_goal(pb::CreateGoalRequest {
            household_id: h(),
            owner_member_id: s.teen.clone(),
            title: "bijbaan vinden".into(),
            life_domains: vec![pb::LifeDomain::DaytimeActivitiesAndWork as i32],
            plan_id: plan.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .goal_id;
    let job_coach = client
        .propose_agreement(pb::ProposeAgreementRequest {
            household_id: h(),
            terms: Some(pb::AgreementTerms {
                title: "jobcoach".into(),
                parties: vec![pb::Party {
                    party: Some(pb::party::Party::MemberId(s.teen.clone())),
                }],
                funding_domain: pb::FundingDomain::Participatiewet as i32,
                start_date: "2026-09-01".into(),
                goal_ids: vec![planned.clone()],
                ..Default::default()
            }),
            // Recorded late, about the day it was agreed: a past day shows what stood then.
            options: Some(pb::CommandOptions {
                effective_date: "2026-05-01".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .agreement_id;
    client
        .accept_agreement(pb::AcceptAgreementRequest {
            household_id: h(),
            agreement_id: job_coach.clone(),
            options: Some(pb::CommandOptions {
                effective_date: "2026-05-01".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();

    let view = client
        .get_plan(pb::GetPlanRequest {
            household_id: h(),
            plan_id: plan.clone(),
            min_position: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(view.plan.unwrap().title, "ondersteuningsplan");
    assert_eq!(
        view.goals
            .iter()
            .map(|g| g.goal_id.as_str())
            .collect::<Vec<_>>(),
        [planned.as_str()]
    );
    assert_eq!(
        view.agreements
            .iter()
            .map(|a| a.agreement_id.as_str())
            .collect::<Vec<_>>(),
        [job_coach.as_str()]
    );

    let goal_viewer = client.clone();
    let goals = |filter: pb::ListGoalsRequest| {
        let mut client = goal_viewer.clone();
        async move { client.list_goals(filter).await.unwrap().into_inner().goals }
    };
    let education = goals(pb::ListGoalsRequest {
        household_id: h(),
        life_domains: vec![pb::LifeDomain::Education as i32],
        ..Default::default()
    })
    .await;
    assert_eq!(
        education
            .iter()
            .map(|g| g.goal_id.as_str())
            .collect::<Vec<_>>(),
        [s.goal.as_str()]
    );
    assert_eq!(
        goals(pb::ListGoalsRequest {
            household_id: h(),
            owner_member_id: s.mother.clone(),
            ..Default::default()
        })
        .await
        .len(),
        0
    );
    assert_eq!(
        goals(pb::ListGoalsRequest {
            household_id: h(),
            statuses: vec![pb::GoalStatus::Active as i32],
            ..Default::default()
        })
        .await
        .len(),
        2
    );
    let first = client
        .list_goals(pb::ListGoalsRequest {
            household_id: h(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.goals.len(), 1);
    let second = client
        .list_goals(pb::ListGoalsRequest {
            household_id: h(),
            page_size: 1,
            page_token: first.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.goals.len(), 1);
    assert_ne!(second.goals[0].goal_id, first.goals[0].goal_id);
    assert!(second.next_page_token.is_empty());

    let viewer = client.clone();
    let agreements = |filter: pb::ListAgreementsRequest| {
        let mut client = viewer.clone();
        async move {
            client
                .list_agreements(filter)
                .await
                .unwrap()
                .into_inner()
                .agreements
        }
    };
    let on = |day: &str, phases: Vec<pb::AgreementPhase>| pb::ListAgreementsRequest {
        household_id: h(),
        as_of_date: day.into(),
        phases: phases.into_iter().map(|p| p as i32).collect(),
        ..Default::default()
    };
    let upcoming = agreements(on("2026-06-01", vec![pb::AgreementPhase::Upcoming])).await;
    assert_eq!(
        upcoming
            .iter()
            .map(|a| a.agreement.as_ref().unwrap().agreement_id.as_str())
            .collect::<Vec<_>>(),
        [job_coach.as_str()]
    );
    let active = agreements(on("2026-06-01", vec![pb::AgreementPhase::Active])).await;
    assert_eq!(
        active
            .iter()
            .map(|a| a.agreement.as_ref().unwrap().agreement_id.as_str())
            .collect::<Vec<_>>(),
        [s.agreement.as_str()]
    );
    assert_eq!(
        agreements(on("2024-08-01", vec![pb::AgreementPhase::Active]))
            .await
            .len(),
        0
    );
    let by_provider = agreements(pb::ListAgreementsRequest {
        household_id: h(),
        responsible_contact_id: s.provider.clone(),
        ..Default::default()
    })
    .await;
    assert_eq!(by_provider.len(), 1);
    let jeugdwet = agreements(pb::ListAgreementsRequest {
        household_id: h(),
        funding_domains: vec![pb::FundingDomain::Jeugdwet as i32],
        ..Default::default()
    })
    .await;
    assert_eq!(jeugdwet.len(), 1);
    client
        .report_agreement_not_delivered(pb::ReportAgreementNotDeliveredRequest {
            household_id: h(),
            agreement_id: s.agreement.clone(),
            date: "2026-01-12".into(),
            description: "begeleider ziek, geen vervanging".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let review = agreements(on("2026-06-01", vec![pb::AgreementPhase::UnderReview])).await;
    assert_eq!(review.len(), 1);

    for (status, field) in [
        (
            client
                .list_goals(pb::ListGoalsRequest {
                    household_id: h(),
                    statuses: vec![0],
                    ..Default::default()
                })
                .await
                .map(|_| ()),
            "statuses[0]",
        ),
        (
            client
                .list_agreements(pb::ListAgreementsRequest {
                    household_id: h(),
                    phases: vec![42],
                    ..Default::default()
                })
                .await
                .map(|_| ()),
            "phases[0]",
        ),
        (
            client
                .list_agreements(pb::ListAgreementsRequest {
                    household_id: h(),
                    as_of_date: "morgen".into(),
                    ..Default::default()
                })
                .await
                .map(|_| ()),
            "as_of_date",
        ),
        (
            client
                .list_goals(pb::ListGoalsRequest {
                    household_id: h(),
                    page_token: "zz".into(),
                    ..Default::default()
                })
                .await
                .map(|_| ()),
            "page_token",
        ),
    ] {
        let status = status.expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.get_details_bad_request().unwrap().field_violations[0].field,
            field
        );
    }
    let missing = client
        .get_plan(pb::GetPlanRequest {
            household_id: h(),
            plan_id: "01937a4e-0000-7000-8000-00000000ffff".into(),
            min_position: 0,
        })
        .await
        .expect_err("no such plan");
    assert_eq!(missing.code(), Code::NotFound);
}

/// Every open signal of the household today.
async fn signals_of_all(api: &mut Api, household: &str) -> Vec<pb::Signal> {
    api.list_signals(pb::ListSignalsRequest {
        household_id: household.into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .signals
}

/// The household's signals as of `as_of` (empty: today), of the kind `kind`.
async fn signals_of(
    api: &mut Api,
    household: &str,
    as_of: &str,
    kind: pb::SignalKind,
) -> Vec<pb::Signal> {
    api.list_signals(pb::ListSignalsRequest {
        household_id: household.into(),
        as_of_date: as_of.into(),
        kinds: vec![kind as i32],
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .signals
}

#[tokio::test]
async fn signals_warn_before_things_go_wrong_and_clear_when_someone_acts() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut api = api(&server).await;
    let s = scenario_two(&mut api).await;
    let h = s.household.as_str();

    // Sam turned 18 on 14 March 2026 and his Jeugdwet agreement has not moved: overdue.
    let turning = signals_of(&mut api, h, "", pb::SignalKind::TurningEighteen).await;
    assert_eq!(turning.len(), 1, "{turning:?}");
    assert_eq!(
        turning[0].cause,
        Some(pb::signal::Cause::AgreementId(s.agreement.clone()))
    );
    assert_eq!(turning[0].due_date, "2026-03-14");
    assert_eq!(turning[0].member_id, s.teen);
    assert!(turning[0].reason.contains("Sam"), "{}", turning[0].reason);

    // Check-ins: 8, then 5 a week later.
    let check_in = |rating: u32, date: &str| pb::RecordCheckInRequest {
        household_id: h.into(),
        member_id: s.teen.clone(),
        date: date.into(),
        rating,
        note: "via de PGO".into(),
        ..Default::default()
    };
    api.record_check_in(check_in(8, "2026-01-01"))
        .await
        .unwrap();
    let dropped = api
        .record_check_in(check_in(5, "2026-01-08"))
        .await
        .unwrap()
        .into_inner()
        .check_in_id;
    let drop = signals_of(&mut api, h, "", pb::SignalKind::CheckInDrop).await;
    assert_eq!(drop.len(), 1, "{drop:?}");
    assert_eq!(
        drop[0].cause,
        Some(pb::signal::Cause::CheckInId(dropped.clone()))
    );
    // As it stood at the end of 2025 there was no check-in yet.
    assert!(
        signals_of(&mut api, h, "2025-12-31", pb::SignalKind::CheckInDrop)
            .await
            .is_empty()
    );

    // The pilot-light phase with fortnightly contact, and no contact since.
    api.change_support_phase(pb::ChangeSupportPhaseRequest {
        household_id: h.into(),
        phase: pb::SupportPhase::PilotLight as i32,
        date: "2026-01-10".into(),
        contact_every_days: Some(14),
        ..Default::default()
    })
    .await
    .unwrap();
    let quiet = signals_of(&mut api, h, "2030-01-01", pb::SignalKind::PilotLightQuiet).await;
    assert_eq!(quiet.len(), 1);
    assert_eq!(quiet[0].due_date, "2026-01-24");
    assert_eq!(quiet[0].cause, Some(pb::signal::Cause::Household(true)));

    // Someone acts: the coach's logbook contact, and the care carried over to the Wmo.
    api.create_logbook_entry(pb::CreateLogbookEntryRequest {
        household_id: h.into(),
        supporter_contact_id: s.coach.clone(),
        date: "2029-12-20".into(),
        minutes: 30,
        contact_mode: pb::ContactMode::Phone as i32,
        tasks: vec![pb::SupporterTask::ListeningEar as i32],
        summary: "even gebeld".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    api.record_funding_transition(pb::RecordFundingTransitionRequest {
        household_id: h.into(),
        member_id: s.teen.clone(),
        from_funding_domain: pb::FundingDomain::Jeugdwet as i32,
        to_funding_domain: pb::FundingDomain::Wmo as i32,
        date: "2026-03-14".into(),
        reason: "18 jaar".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let on = "2030-01-01";
    for kind in [
        pb::SignalKind::TurningEighteen,
        pb::SignalKind::CheckInDrop,
        pb::SignalKind::PilotLightQuiet,
    ] {
        let left = signals_of(&mut api, h, on, kind).await;
        assert!(left.is_empty(), "{kind:?} still stands: {left:?}");
    }
    // Two weeks after that contact the silence is a signal again.
    assert_eq!(
        signals_of(&mut api, h, "2030-02-01", pb::SignalKind::PilotLightQuiet)
            .await
            .len(),
        1
    );

    // Someone the family did not let in sees nothing, and learns nothing.
    let mut stranger = HouseholdServiceClient::new(server.signed("zorgverlener").await);
    let refused = stranger
        .list_signals(pb::ListSignalsRequest {
            household_id: h.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn a_supporter_sees_the_caseload_of_the_households_that_let_them_in_and_each_read_is_logged()
{
    use naast_proto::pb::audit_service_client::AuditServiceClient;
    use naast_proto::pb::consent_service_client::ConsentServiceClient;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut api = api(&server).await;
    let mut consent = ConsentServiceClient::new(server.signed("ouder").await);
    let mut supporter = HouseholdServiceClient::new(server.signed("ondersteuner").await);
    let me = ConsentServiceClient::new(server.signed("ondersteuner").await)
        .get_caller(pb::GetCallerRequest {})
        .await
        .unwrap()
        .into_inner()
        .identity;
    let grant = |household: &str| pb::GrantAccessRequest {
        household_id: household.into(),
        grantee: Some(pb::Grantee {
            kind: Some(pb::grantee::Kind::Person(me.clone().unwrap())),
        }),
        terms: Some(pb::GrantTerms {
            scopes: vec![
                pb::AccessScope::ReadTimeline as i32,
                pb::AccessScope::KeepLogbook as i32,
            ],
            ..Default::default()
        }),
        ..Default::default()
    };
    let caseload = |supporter: &mut Api, min_position: u64| {
        let mut supporter = supporter.clone();
        async move {
            supporter
                .list_caseload(pb::ListCaseloadRequest {
                    min_position,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    assert!(caseload(&mut supporter, 0).await.entries.is_empty());

    // Sam's family lets the supporter in; another family never does; a third did, then not.
    let s = scenario_two(&mut api).await;
    consent.grant_access(grant(&s.household)).await.unwrap();
    api.create_household(pb::CreateHouseholdRequest {
        name: "Familie Jansen".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let former = api
        .create_household(pb::CreateHouseholdRequest {
            name: "Familie de Wit".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .household_id;
    let granted = consent
        .grant_access(grant(&former))
        .await
        .unwrap()
        .into_inner()
        .grant_id;
    consent
        .revoke_access(pb::RevokeAccessRequest {
            household_id: former.clone(),
            grant_id: granted,
            reason: "andere ondersteuner".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    // Two hours of contact today.
    let today = caseload(&mut supporter, 0).await.as_of_date;
    let written = supporter
        .create_logbook_entry(pb::CreateLogbookEntryRequest {
            household_id: s.household.clone(),
            supporter_contact_id: s.coach.clone(),
            date: today.clone(),
            minutes: 120,
            contact_mode: pb::ContactMode::HomeVisit as i32,
            tasks: vec![pb::SupporterTask::ClarifyRequest as i32],
            summary: "huisbezoek".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    let listed = caseload(&mut supporter, written.position).await;
    assert_eq!(listed.entries.len(), 1, "{listed:?}");
    let sam = &listed.entries[0];
    assert_eq!(
        (sam.household_id.as_str(), sam.name.as_str()),
        (s.household.as_str(), "Familie Bakker")
    );
    assert_eq!(sam.minutes_per_week_4_weeks, 30.0);
    assert_eq!(sam.minutes_per_week_12_weeks, 10.0);
    assert_eq!(sam.last_contact_date, today);
    assert!(
        sam.signals
            .iter()
            .any(|signal| signal.kind == pb::SignalKind::TurningEighteen as i32),
        "{:?}",
        sam.signals
    );

    // The family sees in its access log that the supporter's caseload read it.
    let log = AuditServiceClient::new(server.signed("ouder").await)
        .list_access_log(pb::ListAccessLogRequest {
            household_id: s.household.clone(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    assert!(
        log.iter().any(|r| {
            r.operation.ends_with("/ListCaseload")
                && r.user.as_ref().is_some_and(|u| {
                    Some(u.subject.clone()) == me.as_ref().map(|m| m.subject.clone())
                })
        }),
        "{:?}",
        log.iter().map(|r| &r.operation).collect::<Vec<_>>()
    );

    // The caseload is a read model: after `naast replay` it lists the same, figure for figure.
    let on_day = pb::ListCaseloadRequest {
        as_of_date: today.clone(),
        ..Default::default()
    };
    let before = supporter
        .list_caseload(on_day.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before.entries, listed.entries);
    drop((api, consent, supporter, server));
    naast_tests::replay(dir.path());
    let server = Server::start(dir.path());
    let mut supporter = HouseholdServiceClient::new(server.signed("ondersteuner").await);
    let after = supporter.list_caseload(on_day).await.unwrap().into_inner();
    assert_eq!(after, before);
}

/// A day relative to today (UTC), as the API writes days.
fn day(offset: i64) -> String {
    (time::OffsetDateTime::now_utc().date() + time::Duration::days(offset)).to_string()
}

/// The next message of a signal stream, waiting at most 20 s.
async fn next_change(
    stream: &mut tonic::Streaming<pb::SubscribeSignalsResponse>,
) -> pb::SubscribeSignalsResponse {
    tokio::time::timeout(std::time::Duration::from_secs(20), stream.message())
        .await
        .expect("a change within 20 s")
        .unwrap()
        .unwrap()
}

/// A supporter (here the family itself) follows signals live: every open one first, then each
/// appearing and clearing as events arrive; for one household or the whole caseload.
#[tokio::test]
async fn signals_stream_to_whoever_follows_them_as_they_appear_and_clear() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut api = api(&server).await;
    let s = scenario_two(&mut api).await;
    let h = s.household.as_str();
    // The whole caseload: every open signal of the family, as ListSignals gives them.
    let open = signals_of_all(&mut api, h).await;
    assert!(!open.is_empty());
    let mut caseload = api
        .subscribe_signals(pb::SubscribeSignalsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    for _ in 0..open.len() {
        let message = next_change(&mut caseload).await;
        assert_eq!(message.household_id, h);
        assert_eq!(message.change, pb::SignalChange::Appeared as i32);
        seen.push(message.signal.unwrap());
    }
    seen.sort_by(|a, b| (a.kind, &a.due_date).cmp(&(b.kind, &b.due_date)));
    let mut expected = open.clone();
    expected.sort_by(|a, b| (a.kind, &a.due_date).cmp(&(b.kind, &b.due_date)));
    assert_eq!(seen, expected);

    // One household, check-ins only: nothing open yet; a low check-in appears, the coach's
    // contact clears it.
    let mut low = api
        .subscribe_signals(pb::SubscribeSignalsRequest {
            household_id: h.into(),
            kinds: vec![pb::SignalKind::CheckInLow as i32],
        })
        .await
        .unwrap()
        .into_inner();
    api.record_check_in(pb::RecordCheckInRequest {
        household_id: h.into(),
        member_id: s.teen.clone(),
        date: day(-2),
        rating: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    let appeared = next_change(&mut low).await;
    assert_eq!(appeared.change, pb::SignalChange::Appeared as i32);
    assert_eq!(
        appeared.signal.as_ref().unwrap().kind,
        pb::SignalKind::CheckInLow as i32
    );
    // The caseload stream sees it too.
    let also = next_change(&mut caseload).await;
    assert_eq!(also.signal, appeared.signal);
    api.create_logbook_entry(pb::CreateLogbookEntryRequest {
        household_id: h.into(),
        supporter_contact_id: s.coach.clone(),
        date: day(-1),
        minutes: 30,
        contact_mode: pb::ContactMode::Phone as i32,
        tasks: vec![pb::SupporterTask::ListeningEar as i32],
        summary: "even gebeld".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let cleared = next_change(&mut low).await;
    assert_eq!(cleared.change, pb::SignalChange::Cleared as i32);
    assert_eq!(cleared.signal, appeared.signal);
    drop(caseload);

    // Someone with no household yet opens an empty caseload stream. When the family lets them
    // in, its open signals arrive; when it takes that back, they clear.
    use naast_proto::pb::consent_service_client::ConsentServiceClient;
    let mut stranger = HouseholdServiceClient::new(server.signed("zorgverlener").await);
    let mut newcomer = stranger
        .subscribe_signals(pb::SubscribeSignalsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let who = ConsentServiceClient::new(server.signed("zorgverlener").await)
        .get_caller(pb::GetCallerRequest {})
        .await
        .unwrap()
        .into_inner()
        .identity;
    let mut consent = ConsentServiceClient::new(server.signed("ouder").await);
    let open_now = signals_of_all(&mut api, h).await;
    assert!(!open_now.is_empty());
    let grant_id = consent
        .grant_access(pb::GrantAccessRequest {
            household_id: h.into(),
            grantee: Some(pb::Grantee {
                kind: Some(pb::grantee::Kind::Person(who.unwrap())),
            }),
            terms: Some(pb::GrantTerms {
                scopes: vec![pb::AccessScope::ReadTimeline as i32],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .grant_id;
    let mut arrived = Vec::new();
    for _ in 0..open_now.len() {
        let message = next_change(&mut newcomer).await;
        assert_eq!(
            (message.household_id.as_str(), message.change),
            (h, pb::SignalChange::Appeared as i32)
        );
        arrived.push(message.signal.unwrap());
    }
    let order = |signals: &mut Vec<pb::Signal>| {
        signals.sort_by(|a, b| (a.kind, &a.due_date).cmp(&(b.kind, &b.due_date)));
    };
    let mut expected = open_now.clone();
    order(&mut arrived);
    order(&mut expected);
    assert_eq!(arrived, expected);
    consent
        .revoke_access(pb::RevokeAccessRequest {
            household_id: h.into(),
            grant_id,
            reason: "niet meer nodig".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut cleared = Vec::new();
    for _ in 0..open_now.len() {
        let message = next_change(&mut newcomer).await;
        assert_eq!(message.change, pb::SignalChange::Cleared as i32);
        cleared.push(message.signal.unwrap());
    }
    order(&mut cleared);
    assert_eq!(cleared, expected);

    // A household one may not see gets no stream of its own.
    let refused = stranger
        .subscribe_signals(pb::SubscribeSignalsRequest {
            household_id: h.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
}

/// The parent amends scenario 2's agreement to `terms` ("meer nodig").
async fn amend(api: &mut Api, s: &Scenario, terms: &pb::AgreementTerms) {
    api.amend_agreement(pb::AmendAgreementRequest {
        household_id: s.household.clone(),
        agreement_id: s.agreement.clone(),
        terms: Some(terms.clone()),
        reason: "meer nodig".into(),
        ..Default::default()
    })
    .await
    .unwrap();
}

/// The household as it stood then: before an amendment, the agreement's terms as they were
/// agreed; after it, the new ones; before the household existed, nothing.
#[tokio::test]
async fn the_household_as_it_stood_before_and_after_an_amended_agreement() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut api = api(&server).await;
    let s = scenario_two(&mut api).await;
    let get = |as_of_date: &str, as_of_revision: Option<u64>| pb::GetHouseholdRequest {
        household_id: s.household.clone(),
        as_of_date: as_of_date.into(),
        as_of_revision,
        ..Default::default()
    };
    let before = api.get_household(get("", None)).await.unwrap().into_inner();
    let before = before.household.unwrap();
    let agreed = before
        .agreements
        .iter()
        .find(|a| a.agreement_id == s.agreement)
        .unwrap()
        .clone();
    let mut terms = agreed.terms.clone().unwrap();
    terms.title = "Begeleiding, nu twee keer per week".into();
    amend(&mut api, &s, &terms).await;
    let title = |h: &pb::Household| {
        h.agreements
            .iter()
            .find(|a| a.agreement_id == s.agreement)
            .and_then(|a| a.terms.as_ref())
            .map(|t| t.title.clone())
            .unwrap()
    };
    let now = api.get_household(get("", None)).await.unwrap().into_inner();
    let now = now.household.unwrap();
    assert_eq!(title(&now), terms.title);
    assert_eq!(now.revision, before.revision + 1);
    let then = api
        .get_household(get("", Some(before.revision)))
        .await
        .unwrap()
        .into_inner()
        .household
        .unwrap();
    assert_eq!(then, before, "the household as it stood at that revision");
    assert_eq!(title(&then), agreed.terms.unwrap().title);

    // Before the household was registered there is nothing to show; a revision not yet
    // reached, or a day and a revision together, are refused naming the field.
    let none = api
        .get_household(get("1999-01-01", None))
        .await
        .unwrap_err();
    assert_eq!(none.code(), Code::NotFound);
    for (request, field) in [
        (get("", Some(now.revision + 1)), "as_of_revision"),
        (get("2026-01-01", Some(1)), "as_of_revision"),
        (get("gisteren", None), "as_of_date"),
    ] {
        let status = api.get_household(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(
            status.get_details_bad_request().unwrap().field_violations[0].field,
            field
        );
    }
}

/// What changed between two moments, and by whom: the parent amends the agreement, the
/// supporter notes progress on a goal, the parent sets a new goal. From the revision before,
/// each shows with its fields before and after and the one who recorded it; a supporter whose
/// grant covers education and self-determination does not see the new health goal; between two days only what
/// was dated between them counts (the summer the agreement was accepted).
#[tokio::test]
async fn what_changed_between_two_moments_and_by_whom() {
    use naast_proto::pb::consent_service_client::ConsentServiceClient;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut api = api(&server).await;
    let mut supporter = HouseholdServiceClient::new(server.signed("ondersteuner").await);
    let subject = |persona: &'static str| {
        let server = &server;
        async move {
            ConsentServiceClient::new(server.signed(persona).await)
                .get_caller(pb::GetCallerRequest {})
                .await
                .unwrap()
                .into_inner()
                .identity
                .unwrap()
        }
    };
    let (parent, coach) = (subject("ouder").await, subject("ondersteuner").await);
    let s = scenario_two(&mut api).await;
    ConsentServiceClient::new(server.signed("ouder").await)
        .grant_access(pb::GrantAccessRequest {
            household_id: s.household.clone(),
            grantee: Some(pb::Grantee {
                kind: Some(pb::grantee::Kind::Person(coach.clone())),
            }),
            terms: Some(pb::GrantTerms {
                scopes: vec![
                    pb::AccessScope::ReadTimeline as i32,
                    pb::AccessScope::WriteGoalsNotes as i32,
                ],
                life_domains: vec![
                    pb::LifeDomain::Education as i32,
                    pb::LifeDomain::SelfDetermination as i32,
                ],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let start = api
        .get_household(pb::GetHouseholdRequest {
            household_id: s.household.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .household
        .unwrap()
        .revision;

    let view = api
        .list_agreements(pb::ListAgreementsRequest {
            household_id: s.household.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut terms = view.agreements[0]
        .agreement
        .as_ref()
        .unwrap()
        .terms
        .clone()
        .unwrap();
    let agreed_title = terms.title.clone();
    terms.title = "begeleiding drie middagen per week".into();
    terms.end_date = "2026-06-30".into();
    amend(&mut api, &s, &terms).await;
    supporter
        .note_goal_progress(pb::NoteGoalProgressRequest {
            household_id: s.household.clone(),
            goal_id: s.goal.clone(),
            date: day(0),
            note: "weekplanning hangt op de koelkast".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let health = api
        .create_goal(pb::CreateGoalRequest {
            household_id: s.household.clone(),
            owner_member_id: s.teen.clone(),
            title: "gezond eten".into(),
            life_domains: vec![pb::LifeDomain::PhysicalHealth as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let last = health.result.unwrap();

    let since = |from_revision: u64| pb::ListChangesRequest {
        household_id: s.household.clone(),
        from_revision: Some(from_revision),
        min_position: last.position,
        ..Default::default()
    };
    let changes = api.list_changes(since(start)).await.unwrap().into_inner();
    assert_eq!(changes.from_revision, Some(start));
    assert_eq!(changes.to_revision, last.revision);
    let summary: Vec<(i32, &str, bool)> = changes
        .changes
        .iter()
        .map(|c| (c.object, c.id.as_str(), c.added))
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                pb::ChangedObject::Agreement as i32,
                s.agreement.as_str(),
                false
            ),
            (pb::ChangedObject::Goal as i32, s.goal.as_str(), false),
            (
                pb::ChangedObject::Goal as i32,
                health.goal_id.as_str(),
                true
            ),
        ]
    );
    let field = |change: &pb::HouseholdChange, name: &str| {
        change
            .fields
            .iter()
            .find(|f| f.field == name)
            .map(|f| (f.before.clone(), f.after.clone()))
    };
    let amended = &changes.changes[0];
    assert_eq!(amended.title, terms.title);
    assert_eq!(
        field(amended, "terms.title"),
        Some((Some(agreed_title.clone()), Some(terms.title.clone())))
    );
    assert_eq!(
        field(amended, "terms.end"),
        Some((None, Some("2026-06-30".into())))
    );
    assert_eq!(field(amended, "terms.frequency"), None, "unchanged");
    let by = |change: &pb::HouseholdChange| {
        change
            .events
            .iter()
            .map(|e| (e.event_type.clone(), e.actor.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        by(amended),
        vec![("AgreementAmended".into(), parent.subject.clone())]
    );
    assert_eq!(
        by(&changes.changes[1]),
        vec![("GoalProgressNoted".into(), coach.subject.clone())]
    );
    assert_eq!(
        field(&changes.changes[1], "progress_notes"),
        Some((Some("0".into()), Some("1".into())))
    );
    assert_eq!(
        field(&changes.changes[2], "title"),
        Some((None, Some("gezond eten".into())))
    );
    assert!(
        amended.events[0].summary.contains(&terms.title),
        "{amended:?}"
    );

    // The supporter sees those domains only: the agreement that serves the education goal, and
    // that goal; not the health goal.
    let seen = supporter
        .list_changes(since(start))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = seen.changes.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, vec![s.agreement.as_str(), s.goal.as_str()]);

    // Between two days of the summer before: the agreement proposed on the 15th of August was
    // accepted on the 20th, recorded that way long after.
    let summer = api
        .list_changes(pb::ListChangesRequest {
            household_id: s.household.clone(),
            from_date: "2025-08-16".into(),
            to_date: "2025-08-31".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summer.changes.len(), 1, "{summer:?}");
    assert_eq!(
        field(&summer.changes[0], "status"),
        Some((Some("Proposed".into()), Some("Accepted".into())))
    );
    assert_eq!(summer.changes[0].events[0].date, "2025-08-20");
    assert_eq!(
        summer.changes[0].title, agreed_title,
        "its title as it was then, before today's amendment"
    );

    // Bad moments are refused, naming the field.
    let moments =
        |from_date: &str, from_revision, to_date: &str, to_revision| pb::ListChangesRequest {
            household_id: s.household.clone(),
            from_date: from_date.into(),
            from_revision,
            to_date: to_date.into(),
            to_revision,
            ..Default::default()
        };
    for (request, field) in [
        (moments("", None, "", None), "from_date"),
        (moments("2025-08-16", Some(1), "", None), "from_date"),
        (moments("2025-08-16", None, "", Some(3)), "to_revision"),
        (moments("", Some(1), "2025-08-31", None), "to_date"),
        (moments("2025-08-31", None, "2025-08-16", None), "to_date"),
        (moments("", Some(5), "", Some(4)), "to_revision"),
        (
            moments("", Some(1), "", Some(last.revision + 1)),
            "to_revision",
        ),
        (
            moments("", Some(last.revision + 1), "", None),
            "from_revision",
        ),
        (moments("augustus", None, "", None), "from_date"),
    ] {
        let status = api.list_changes(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(
            status.get_details_bad_request().unwrap().field_violations[0].field,
            field
        );
    }
}
