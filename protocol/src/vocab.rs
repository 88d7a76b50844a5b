//! The sector's closed vocabularies, with the codes of the national activity-report model.
//!
//! Codes are what files and the wire carry; labels are what people read, in French.

use std::fmt;

/// A closed list of codes, each with a French label.
pub trait Vocabulary: Sized + Copy + Eq + 'static {
    /// The vocabulary's name as a column or indicator would show it.
    const NAME: &'static str;
    /// Every value, in the order of the official model.
    const ALL: &'static [Self];
    /// The code written in files and on the wire.
    fn code(self) -> &'static str;
    /// The French label shown to people.
    fn label(self) -> &'static str;

    /// The value whose code is exactly `code`.
    fn from_code(code: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.code() == code)
    }

    /// Every code, in order; used to say what would be accepted.
    fn codes() -> Vec<&'static str> {
        Self::ALL.iter().map(|v| v.code()).collect()
    }

    /// The position of this value in [`Vocabulary::ALL`].
    fn index(self) -> usize {
        // unwrap safety: every value of the enum is listed in ALL (checked by a unit test).
        #[allow(clippy::unwrap_used)]
        Self::ALL.iter().position(|v| *v == self).unwrap()
    }
}

macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident, $vocab:literal, { $($variant:ident => ($code:literal, $label:literal)),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl Vocabulary for $name {
            const NAME: &'static str = $vocab;
            const ALL: &'static [Self] = &[$(Self::$variant),+];
            fn code(self) -> &'static str {
                match self { $(Self::$variant => $code),+ }
            }
            fn label(self) -> &'static str {
                match self { $(Self::$variant => $label),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.code())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.code())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let code = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                <Self as Vocabulary>::from_code(&code).ok_or_else(|| {
                    serde::de::Error::custom(format_args!(
                        "unknown {} {:?}: expected one of {}",
                        <Self as Vocabulary>::NAME,
                        code,
                        <Self as Vocabulary>::codes().join(", ")
                    ))
                })
            }
        }
    };
}

pub(crate) use vocabulary;

vocabulary!(
    /// Whether an activity accompanies one person or is a collective workshop.
    ActivityType, "type", {
        Individuel => ("individuel", "Accompagnement individuel"),
        Collectif => ("collectif", "Atelier collectif"),
    }
);

vocabulary!(
    /// Where an activity took place.
    PlaceType, "type_lieu", {
        LieuActivite => ("lieu_activite", "Lieu d'activité"),
        Domicile => ("domicile", "À domicile"),
        ADistance => ("a_distance", "À distance"),
        Autre => ("autre", "Autre lieu"),
    }
);

vocabulary!(
    /// What an accompaniment was about: 19 digital-mediation themes, then the 11
    /// administrative-procedure themes.
    Thematique, "thematiques", {
        DiagnosticNumerique => ("diagnostic_numerique", "Diagnostic numérique"),
        PrendreEnMainDuMateriel => ("prendre_en_main_du_materiel", "Prendre en main du matériel"),
        MaintenanceDeMateriel => ("maintenance_de_materiel", "Maintenance de matériel"),
        GereSesContenusNumeriques => ("gere_ses_contenus_numeriques", "Gérer ses contenus numériques"),
        NavigationSurInternet => ("navigation_sur_internet", "Navigation sur internet"),
        Email => ("email", "E-mail"),
        Bureautique => ("bureautique", "Bureautique"),
        ReseauxSociaux => ("reseaux_sociaux", "Réseaux sociaux"),
        Sante => ("sante", "Santé"),
        BanqueEtAchatsEnLigne => ("banque_et_achats_en_ligne", "Banque et achats en ligne"),
        Entrepreneuriat => ("entrepreneuriat", "Entrepreneuriat"),
        InsertionProfessionnelle => ("insertion_professionnelle", "Insertion professionnelle"),
        SecuriteNumerique => ("securite_numerique", "Sécurité numérique"),
        Parentalite => ("parentalite", "Parentalité"),
        ScolariteEtNumerique => ("scolarite_et_numerique", "Scolarité et numérique"),
        CreerAvecLeNumerique => ("creer_avec_le_numerique", "Créer avec le numérique"),
        CultureNumerique => ("culture_numerique", "Culture numérique"),
        IntelligenceArtificielle => ("intelligence_artificielle", "Intelligence artificielle"),
        AideAuxDemarchesAdministratives => ("aide_aux_demarches_administratives", "Aide aux démarches administratives"),
        PapiersElectionsCitoyennete => ("papiers_elections_citoyennete", "Papiers, élections, citoyenneté"),
        FamilleScolarite => ("famille_scolarite", "Famille, scolarité"),
        SocialSante => ("social_sante", "Social, santé"),
        TravailFormation => ("travail_formation", "Travail, formation"),
        Logement => ("logement", "Logement"),
        TransportsMobilite => ("transports_mobilite", "Transports, mobilité"),
        ArgentImpots => ("argent_impots", "Argent, impôts"),
        Justice => ("justice", "Justice"),
        EtrangersEurope => ("etrangers_europe", "Étrangers, Europe"),
        LoisirsSportsCulture => ("loisirs_sports_culture", "Loisirs, sports, culture"),
        Associations => ("associations", "Associations"),
    }
);

impl Thematique {
    /// The 19 digital-mediation themes counted by the core `thematiques` indicator.
    pub fn mediation() -> &'static [Thematique] {
        &Self::ALL[..19]
    }

    /// The 11 administrative-procedure themes counted by the `demarches` module.
    pub fn administrative() -> &'static [Thematique] {
        &Self::ALL[19..]
    }

    /// Whether this theme is one of the 11 administrative-procedure themes.
    pub fn is_administrative(self) -> bool {
        self.index() >= 19
    }
}

vocabulary!(
    /// The equipment used during an accompaniment.
    Materiel, "materiel", {
        Ordinateur => ("ordinateur", "Ordinateur"),
        Telephone => ("telephone", "Téléphone"),
        Tablette => ("tablette", "Tablette"),
        Autre => ("autre", "Autre matériel"),
        Aucun => ("aucun", "Pas de matériel"),
    }
);

vocabulary!(
    /// How autonomous the person was during an individual accompaniment.
    Autonomie, "autonomie", {
        EntierementAccompagne => ("entierement_accompagne", "Entièrement accompagné"),
        PartiellementAutonome => ("partiellement_autonome", "Partiellement autonome"),
        Autonome => ("autonome", "Autonome"),
    }
);

vocabulary!(
    /// The level of a collective workshop.
    NiveauAtelier, "niveau_atelier", {
        Debutant => ("debutant", "Débutant"),
        Intermediaire => ("intermediaire", "Intermédiaire"),
        Avance => ("avance", "Avancé"),
    }
);

vocabulary!(
    /// Gender as declared by the person.
    Genre, "genre", {
        Masculin => ("masculin", "Masculin"),
        Feminin => ("feminin", "Féminin"),
        NonCommunique => ("non_communique", "Non communiqué"),
    }
);

vocabulary!(
    /// Age band.
    TrancheAge, "tranche_age", {
        MoinsDeDouze => ("moins_de_douze", "Moins de 12 ans"),
        DouzeDixHuit => ("douze_dix_huit", "12-18 ans"),
        DixHuitVingtQuatre => ("dix_huit_vingt_quatre", "18-24 ans"),
        VingtCinqTrenteNeuf => ("vingt_cinq_trente_neuf", "25-39 ans"),
        QuaranteCinquanteNeuf => ("quarante_cinquante_neuf", "40-59 ans"),
        SoixanteSoixanteNeuf => ("soixante_soixante_neuf", "60-69 ans"),
        SoixanteDixPlus => ("soixante_dix_plus", "70 ans et plus"),
        NonCommunique => ("non_communique", "Non communiqué"),
    }
);

vocabulary!(
    /// Social status.
    StatutSocial, "statut_social", {
        Scolarise => ("scolarise", "Scolarisé"),
        SansEmploi => ("sans_emploi", "Sans emploi"),
        EnEmploi => ("en_emploi", "En emploi"),
        Retraite => ("retraite", "Retraité"),
        NonCommunique => ("non_communique", "Non communiqué"),
    }
);

vocabulary!(
    /// A yes/no answer as the activity-report model writes it.
    OuiNon, "oui/non", {
        Oui => ("oui", "Oui"),
        Non => ("non", "Non"),
    }
);

impl OuiNon {
    /// `true` for `oui`.
    pub fn is_yes(self) -> bool {
        self == OuiNon::Oui
    }
}

vocabulary!(
    /// The duration bands of national statistics.
    DurationBand, "durees", {
        MoinsDe30 => ("moins_de_30_min", "Moins de 30 min"),
        De30A60 => ("de_30_a_60_min", "30 à 60 min"),
        De60A120 => ("de_60_a_120_min", "60 à 120 min"),
        PlusDe120 => ("120_min_et_plus", "120 min et plus"),
    }
);

impl DurationBand {
    /// The band of a duration in minutes.
    pub fn of_minutes(minutes: u32) -> Self {
        match minutes {
            0..30 => Self::MoinsDe30,
            30..60 => Self::De30A60,
            60..120 => Self::De60A120,
            _ => Self::PlusDe120,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<V: Vocabulary + std::fmt::Debug>() {
        let codes = V::codes();
        let mut unique = codes.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), codes.len(), "duplicate code in {}", V::NAME);
        for (i, v) in V::ALL.iter().enumerate() {
            assert_eq!(v.index(), i);
            assert_eq!(V::from_code(v.code()), Some(*v));
        }
        assert_eq!(V::from_code("nope"), None);
    }

    #[test]
    fn vocabularies_are_consistent() {
        check::<ActivityType>();
        check::<PlaceType>();
        check::<Thematique>();
        check::<Materiel>();
        check::<Autonomie>();
        check::<NiveauAtelier>();
        check::<Genre>();
        check::<TrancheAge>();
        check::<StatutSocial>();
        check::<OuiNon>();
        check::<DurationBand>();
    }

    #[test]
    fn thematiques_split_19_and_11() {
        assert_eq!(Thematique::ALL.len(), 30);
        assert_eq!(Thematique::mediation().len(), 19);
        assert_eq!(Thematique::administrative().len(), 11);
        assert!(!Thematique::AideAuxDemarchesAdministratives.is_administrative());
        assert!(Thematique::Logement.is_administrative());
    }

    #[test]
    fn duration_bands_follow_national_statistics() {
        assert_eq!(DurationBand::of_minutes(1), DurationBand::MoinsDe30);
        assert_eq!(DurationBand::of_minutes(29), DurationBand::MoinsDe30);
        assert_eq!(DurationBand::of_minutes(30), DurationBand::De30A60);
        assert_eq!(DurationBand::of_minutes(60), DurationBand::De60A120);
        assert_eq!(DurationBand::of_minutes(119), DurationBand::De60A120);
        assert_eq!(DurationBand::of_minutes(120), DurationBand::PlusDe120);
        assert_eq!(DurationBand::of_minutes(1440), DurationBand::PlusDe120);
    }
}
