//! The shared vocabulary: funding domains, life domains, roles, supporter kinds, phases, the 18
//! supporter tasks. One word per concept, in identifiers English, in display the Dutch terms the
//! families, supporters and partner systems use.

use serde::{Deserialize, Serialize};

/// Declares a closed vocabulary: variants with their wire name (snake_case, stable, used in
/// events and the API) and their display name.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $wire:literal, $display:literal;)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $wire)] $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The stable name used in events and on the wire.
            pub fn wire_name(self) -> &'static str {
                match self { $($name::$variant => $wire,)+ }
            }

            /// The name shown to people (Dutch terms where the field uses them).
            pub fn display_name(self) -> &'static str {
                match self { $($name::$variant => $display,)+ }
            }

            /// The value with this wire name.
            pub fn from_wire(name: &str) -> Option<Self> {
                match name { $($wire => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.display_name())
            }
        }
    };
}

vocabulary! {
    /// Which law or scheme funds a piece of care or support.
    FundingDomain {
        /// Wet maatschappelijke ondersteuning: support at home, aids, day activities (municipality).
        Wmo = "wmo", "Wmo";
        /// Wet langdurige zorg: lifelong 24/7 care (CIZ indication, zorgkantoor).
        Wlz = "wlz", "Wlz";
        /// Zorgverzekeringswet: medical care, nursing at home, rehabilitation (insurer).
        Zvw = "zvw", "Zvw";
        /// Jeugdwet: youth care under 18 (municipality); ends at the 18th birthday.
        Jeugdwet = "jeugdwet", "Jeugdwet";
        /// Participatiewet or UWV: income, debt relief, work reintegration.
        Participatiewet = "participatiewet", "Participatiewet/UWV";
        /// Informal care by the family's own network; no funding scheme.
        Informal = "informal", "informele zorg";
    }
}

vocabulary! {
    /// Life domains (leefgebieden) that goals, agreements and logbook entries are tagged with.
    LifeDomain {
        /// Wonen.
        Housing = "housing", "wonen";
        /// Dagbesteding en werk.
        DaytimeActivitiesAndWork = "daytime_activities_and_work", "dagbesteding en werk";
        /// Onderwijs.
        Education = "education", "onderwijs";
        /// Financiën en inkomen.
        FinancesAndIncome = "finances_and_income", "financiën en inkomen";
        /// Lichamelijke gezondheid.
        PhysicalHealth = "physical_health", "lichamelijke gezondheid";
        /// Psychische gezondheid en welzijn.
        MentalHealthAndWellbeing = "mental_health_and_wellbeing", "psychische gezondheid en welzijn";
        /// Sociaal netwerk.
        SocialNetwork = "social_network", "sociaal netwerk";
        /// Gezinsleven en relaties.
        FamilyLifeAndRelationships = "family_life_and_relationships", "gezinsleven en relaties";
        /// Eigen regie.
        SelfDetermination = "self_determination", "eigen regie";
        /// Vrije tijd en hobby's.
        LeisureAndHobbies = "leisure_and_hobbies", "vrije tijd en hobby's";
        /// Mobiliteit.
        Mobility = "mobility", "mobiliteit";
        /// Zingeving.
        Meaning = "meaning", "zingeving";
        /// Regelzaken: organising care and administration.
        CareOrganisation = "care_organisation", "regelzaken";
        /// Veiligheid.
        Safety = "safety", "veiligheid";
    }
}

vocabulary! {
    /// The role of a household member.
    MemberRole {
        /// Someone who needs care (zorgvrager); a family can have several.
        Client = "client", "zorgvrager";
        /// A relative (naaste).
        Relative = "relative", "naaste";
        /// A legal representative (wettelijk vertegenwoordiger), who may also be a relative.
        LegalRepresentative = "legal_representative", "wettelijk vertegenwoordiger";
    }
}

vocabulary! {
    /// How a relative is related to the client(s).
    Relation {
        /// Ouder.
        Parent = "parent", "ouder";
        /// Partner.
        Partner = "partner", "partner";
        /// Broer of zus.
        Sibling = "sibling", "broer/zus";
        /// Kind.
        Child = "child", "kind";
        /// Another relation, described in the member's name or notes.
        Other = "other", "overig";
    }
}

vocabulary! {
    /// The specialised client supporter's kind, by pilot.
    SupporterKind {
        /// Pilot 1: copiloot, for families with a child with ZEVMB.
        Copilot = "copilot", "copiloot";
        /// Pilot 2: levensloopbegeleider, autism.
        LifeCourseCoach = "life_course_coach", "levensloopbegeleider";
        /// Pilot 3: casemanager hersenletsel, acquired brain injury.
        BrainInjuryCaseManager = "brain_injury_case_manager", "casemanager hersenletsel";
        /// Pilot 4: netwerkgids, (L)VB+.
        NetworkGuide = "network_guide", "netwerkgids";
        /// Pilot 5: bondgenoot, whole families with a Wlz indication.
        Ally = "ally", "bondgenoot";
        /// Regular client support (reguliere cliëntondersteuning).
        RegularClientSupport = "regular_client_support", "cliëntondersteuner";
    }
}

vocabulary! {
    /// What a network contact is.
    ContactKind {
        /// A specialised client supporter (with a [`SupporterKind`]).
        Supporter = "supporter", "cliëntondersteuner";
        /// A care provider organisation (zorgaanbieder).
        CareProvider = "care_provider", "zorgaanbieder";
        /// A professional of a care provider.
        Professional = "professional", "professional";
        /// An institution (with an [`InstitutionKind`]).
        Institution = "institution", "instantie";
    }
}

vocabulary! {
    /// Kinds of institution a family deals with.
    InstitutionKind {
        /// Gemeente.
        Municipality = "municipality", "gemeente";
        /// Centrum Indicatiestelling Zorg.
        Ciz = "ciz", "CIZ";
        /// Zorgkantoor (Wlz).
        Zorgkantoor = "zorgkantoor", "zorgkantoor";
        /// Zorgverzekeraar.
        Insurer = "insurer", "zorgverzekeraar";
        /// UWV.
        Uwv = "uwv", "UWV";
        /// School.
        School = "school", "school";
        /// SVB, which pays out PGB.
        Svb = "svb", "SVB";
        /// Hospital.
        Hospital = "hospital", "ziekenhuis";
    }
}

vocabulary! {
    /// The phase support is in; intensity goes up and down, the supporter stays the same.
    SupportPhase {
        /// Vertrouwen opbouwen.
        TrustBuilding = "trust_building", "vertrouwen opbouwen";
        /// Crisis: clear the rubble (urgent housing, income, budgets).
        Crisis = "crisis", "crisis";
        /// Organise and plan care.
        Organising = "organising", "zorg organiseren";
        /// Personal questions.
        Personal = "personal", "persoonlijke vragen";
        /// Waakvlam: keep contact, step in when needed.
        PilotLight = "pilot_light", "waakvlam";
        /// Handed over to regular care.
        HandedOver = "handed_over", "overgedragen";
    }
}

vocabulary! {
    /// Kinds of plan.
    PlanKind {
        /// Gezinsplan (pilot 5).
        FamilyPlan = "family_plan", "gezinsplan";
        /// Ondersteuningsplan.
        SupportPlan = "support_plan", "ondersteuningsplan";
        /// Wlz zorgplan.
        WlzCarePlan = "wlz_care_plan", "Wlz-zorgplan";
        /// Casemanagementplan (pilot 3).
        CaseManagementPlan = "case_management_plan", "casemanagementplan";
        /// Waakvlamplan.
        PilotLightPlan = "pilot_light_plan", "waakvlamplan";
    }
}

vocabulary! {
    /// Kinds of indication or decision that give access to funded care.
    IndicationKind {
        /// Wlz indication by the CIZ, with a care profile such as VG6.
        WlzIndication = "wlz_indication", "Wlz-indicatie";
        /// Wmo decision (beschikking) of the municipality.
        WmoDecision = "wmo_decision", "Wmo-beschikking";
        /// Zvw nursing indication (wijkverpleging).
        ZvwNursingIndication = "zvw_nursing_indication", "Zvw-indicatie verpleging";
        /// Jeugdwet decision of the municipality.
        JeugdwetDecision = "jeugdwet_decision", "Jeugdwet-beschikking";
    }
}

impl IndicationKind {
    /// The funding domain this kind of indication gives access to.
    pub fn funding_domain(self) -> FundingDomain {
        match self {
            Self::WlzIndication => FundingDomain::Wlz,
            Self::WmoDecision => FundingDomain::Wmo,
            Self::ZvwNursingIndication => FundingDomain::Zvw,
            Self::JeugdwetDecision => FundingDomain::Jeugdwet,
        }
    }
}

vocabulary! {
    /// How a supporter was in contact.
    ContactMode {
        /// Huisbezoek.
        HomeVisit = "home_visit", "huisbezoek";
        /// Telefoon.
        Phone = "phone", "telefoon";
        /// App or chat.
        App = "app", "app";
        /// Video call.
        Video = "video", "beeldbellen";
        /// Accompanying the family elsewhere (municipality, hospital, school, …).
        Accompanying = "accompanying", "begeleiden naar afspraak";
    }
}

vocabulary! {
    /// The 18 tasks of the specialised client supporter: the activity vocabulary of the logbook.
    SupporterTask {
        /// 1 inform and advise.
        InformAndAdvise = "inform_and_advise", "informeren en adviseren";
        /// 2 clarify the request for help.
        ClarifyRequest = "clarify_request", "hulpvraag verhelderen";
        /// 3 help with administration.
        Administration = "administration", "administratieve ondersteuning";
        /// 4 find and apply for fitting care (zorgbemiddeling).
        CareMediation = "care_mediation", "zorgbemiddeling";
        /// 5 facilitate dialogue between parties.
        FacilitateDialogue = "facilitate_dialogue", "dialoog faciliteren";
        /// 6 scale up care when needed.
        ScaleUpCare = "scale_up_care", "zorg opschalen";
        /// 7 coordinate care between providers.
        CoordinateCare = "coordinate_care", "zorg coördineren";
        /// 8 coordinate other support.
        CoordinateSupport = "coordinate_support", "overige ondersteuning coördineren";
        /// 9 accompany to external contacts.
        AccompanyExternal = "accompany_external", "begeleiden naar instanties";
        /// 10 bring in expertise about the condition.
        ConditionExpertise = "condition_expertise", "expertise over de aandoening";
        /// 11 strengthen own direction and participation (coaching).
        StrengthenSelfDirection = "strengthen_self_direction", "eigen regie versterken";
        /// 12 activating guidance.
        ActivatingGuidance = "activating_guidance", "activerende begeleiding";
        /// 13 a listening ear.
        ListeningEar = "listening_ear", "luisterend oor";
        /// 14 advocacy.
        Advocacy = "advocacy", "belangenbehartiging";
        /// 15 support with complaints and objections.
        ComplaintsAndObjections = "complaints_and_objections", "klachten en bezwaar";
        /// 16 reflect on one's own life and ambitions.
        ReflectOnLife = "reflect_on_life", "reflectie op leven en ambities";
        /// 17 realise custom solutions (maatwerk).
        CustomSolutions = "custom_solutions", "maatwerk realiseren";
        /// 18 signal system improvements to organisations.
        SignalImprovements = "signal_improvements", "signaleren van verbeteringen";
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip_and_are_unique() {
        fn check<T: Copy + PartialEq + std::fmt::Debug>(
            all: &[T],
            wire: fn(T) -> &'static str,
            from: fn(&str) -> Option<T>,
        ) {
            let mut seen = std::collections::HashSet::new();
            for v in all {
                assert!(seen.insert(wire(*v)), "{:?}", v);
                assert_eq!(from(wire(*v)), Some(*v));
            }
        }
        check(
            LifeDomain::ALL,
            LifeDomain::wire_name,
            LifeDomain::from_wire,
        );
        check(
            SupporterTask::ALL,
            SupporterTask::wire_name,
            SupporterTask::from_wire,
        );
        check(
            FundingDomain::ALL,
            FundingDomain::wire_name,
            FundingDomain::from_wire,
        );
        assert_eq!(LifeDomain::ALL.len(), 14);
        assert_eq!(SupporterTask::ALL.len(), 18);
        assert_eq!(FundingDomain::from_wire("wlz "), None);
    }

    #[test]
    fn serde_uses_the_wire_names() {
        let json = serde_json::to_string(&LifeDomain::CareOrganisation).unwrap_or_default();
        assert_eq!(json, "\"care_organisation\"");
        assert_eq!(
            serde_json::from_str::<FundingDomain>("\"jeugdwet\"").ok(),
            Some(FundingDomain::Jeugdwet)
        );
    }
}

vocabulary! {
    /// What a consent grant allows. Reading is limited further by the grant's life and funding
    /// domains; each of the others allows the writes it names.
    AccessScope {
        /// Read the timeline, goals, agreements and plans (within the grant's domains).
        ReadTimeline = "read_timeline", "tijdlijn inzien";
        /// Set and update goals, write notes.
        WriteGoalsNotes = "write_goals_notes", "doelen en notities schrijven";
        /// Propose, amend and end agreements, report them not delivered.
        ProposeAgreements = "propose_agreements", "afspraken voorstellen";
        /// Keep the supporter's logbook.
        KeepLogbook = "keep_logbook", "logboek bijhouden";
        /// Add, change and remove network contacts.
        ManageNetwork = "manage_network", "netwerk beheren";
        /// Plans, support phases, indications and funding transitions.
        ManagePlans = "manage_plans", "plannen beheren";
    }
}

vocabulary! {
    /// Who a caller is, as their access token says.
    PrincipalRole {
        /// A person of a household (client, relative, legal representative).
        Citizen = "citizen", "burger";
        /// A client supporter.
        Supporter = "supporter", "cliëntondersteuner";
        /// A professional of a care provider, on behalf of an organisation.
        Professional = "professional", "zorgprofessional";
        /// A PGO platform, acting for a household member named in the token.
        Platform = "pgo", "PGO-platform";
        /// A programme evaluator: aggregate figures only.
        Evaluator = "evaluator", "evaluator";
        /// A service administrator: runs the service, reads no household's data.
        Administrator = "admin", "beheerder";
    }
}

vocabulary! {
    /// Who answers a measurement instrument.
    RespondentKind {
        /// The client (zorgvrager) about their own life.
        Client = "client", "cliënt";
        /// A relative (naaste), a parent or partner, about their own life or the client's.
        Relative = "relative", "naaste";
        /// The client supporter, about the household.
        Supporter = "supporter", "ondersteuner";
    }
}

vocabulary! {
    /// The moments of an effect measurement.
    MeasurementMoment {
        /// Nulmeting: at the start of support.
        T0 = "t0", "nulmeting";
        /// Een-meting: after some months of support.
        T1 = "t1", "een-meting";
        /// Twee-meting: later again.
        T2 = "t2", "twee-meting";
    }
}

vocabulary! {
    /// What a question of a measurement instrument measures.
    ItemKind {
        /// The overall rating of one's life, 1 to 10 (rapportcijfer).
        LifeRating = "life_rating", "rapportcijfer voor het leven";
        /// A statement rated on the item's scale ("Ik heb structuur in mijn leven").
        Statement = "statement", "stelling";
        /// Self-rated health, from poor to excellent.
        SelfRatedHealth = "self_rated_health", "ervaren gezondheid";
        /// Satisfaction with one life domain, with whether the respondent wants it to change.
        DomainSatisfaction = "domain_satisfaction", "tevredenheid per leefgebied";
        /// A resilience score (veerkracht).
        Resilience = "resilience", "veerkracht";
    }
}

vocabulary! {
    /// The six family types pilot 5 ("Bondgenoot van Naasten") ordered its families by; its
    /// societal business case estimates costs per type.
    FamilyType {
        /// Parents as well as children need care.
        ParentsAndChildrenNeedCare = "parents_and_children_need_care", "gezin waarin ouder(s) en kind(eren) zorg nodig hebben";
        /// A family with a non-western background.
        NonWesternBackground = "non_western_background", "gezin met niet-westerse achtergrond";
        /// A family with a child or children living away from home.
        ChildrenAwayFromHome = "children_away_from_home", "gezin met kind(eren) uit huis";
        /// A single-parent family.
        SingleParent = "single_parent", "eenoudergezin";
        /// A family with young children.
        YoungChildren = "young_children", "gezin met jonge kinderen";
        /// A person with a disability living alone.
        SinglePersonWithDisability = "single_person_with_disability", "alleenstaande persoon met een beperking";
    }
}
