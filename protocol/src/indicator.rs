//! The indicator catalogue: the common core of DATA.md and the optional modules a policy may add.
//!
//! Every structure's release lists the same cells for an indicator (histograms list every
//! category, zeros included) so that releases can be summed cell by cell.

use std::fmt;

use crate::vocab::{
    ActivityType, Autonomie, DurationBand, Genre, Materiel, NiveauAtelier, PlaceType, StatutSocial,
    Thematique, TrancheAge, Vocabulary, vocabulary,
};

vocabulary!(
    /// An indicator of the catalogue, by its identifier.
    Indicator, "indicateur", {
        Activites => ("activites", "Activités"),
        Accompagnements => ("accompagnements", "Accompagnements"),
        Beneficiaires => ("beneficiaires", "Bénéficiaires"),
        NouveauxBeneficiaires => ("nouveaux_beneficiaires", "Nouveaux bénéficiaires"),
        DureeMinutes => ("duree_minutes", "Durée des activités (minutes)"),
        Thematiques => ("thematiques", "Accompagnements par thématique"),
        TranchesAge => ("tranches_age", "Bénéficiaires par tranche d'âge"),
        StatutsSociaux => ("statuts_sociaux", "Bénéficiaires par statut social"),
        Autonomie => ("autonomie", "Accompagnements individuels par degré d'autonomie"),
        Orientations => ("orientations", "Orientations vers une autre structure"),
        Genres => ("genres", "Bénéficiaires par genre"),
        Durees => ("durees", "Activités par durée"),
        Lieux => ("lieux", "Activités par type de lieu"),
        Materiel => ("materiel", "Accompagnements par matériel utilisé"),
        Demarches => ("demarches", "Accompagnements par démarche administrative"),
        NiveauxAteliers => ("niveaux_ateliers", "Ateliers collectifs par niveau"),
    }
);

/// What kind of figure an indicator is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndicatorKind {
    /// One count.
    Count,
    /// A count per category of a small vocabulary (e.g. per activity type).
    CountBy,
    /// A sum of minutes.
    Sum,
    /// A count per category of a vocabulary, every category listed.
    Histogram,
}

impl IndicatorKind {
    /// The name used in documents and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Count => "count",
            Self::CountBy => "count_by",
            Self::Sum => "sum",
            Self::Histogram => "histogram",
        }
    }
}

impl fmt::Display for IndicatorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn codes_of<V: Vocabulary>(values: &[V]) -> Vec<&'static str> {
    values.iter().map(|v| v.code()).collect()
}

impl Indicator {
    /// The ten indicators of the common core (policy v1 default), in catalogue order.
    pub const COMMON_CORE: &'static [Indicator] = &[
        Self::Activites,
        Self::Accompagnements,
        Self::Beneficiaires,
        Self::NouveauxBeneficiaires,
        Self::DureeMinutes,
        Self::Thematiques,
        Self::TranchesAge,
        Self::StatutsSociaux,
        Self::Autonomie,
        Self::Orientations,
    ];

    /// The optional modules a policy may add to the common core.
    pub const MODULES: &'static [Indicator] = &[
        Self::Genres,
        Self::Durees,
        Self::Lieux,
        Self::Materiel,
        Self::Demarches,
        Self::NiveauxAteliers,
    ];

    /// The indicator's kind.
    pub fn kind(self) -> IndicatorKind {
        match self {
            Self::Activites | Self::Accompagnements => IndicatorKind::CountBy,
            Self::Beneficiaires | Self::NouveauxBeneficiaires | Self::Orientations => {
                IndicatorKind::Count
            }
            Self::DureeMinutes => IndicatorKind::Sum,
            _ => IndicatorKind::Histogram,
        }
    }

    /// The categories of a `CountBy` or `Histogram` indicator, in order; empty for a plain
    /// count or sum.
    pub fn categories(self) -> Vec<&'static str> {
        self.category_codes().to_vec()
    }

    /// [`Indicator::categories`], without allocating (decoding checks them for every cell).
    pub fn category_codes(self) -> &'static [&'static str] {
        static CODES: std::sync::OnceLock<Vec<Vec<&'static str>>> = std::sync::OnceLock::new();
        let codes =
            CODES.get_or_init(|| Self::ALL.iter().map(|i| i.compute_categories()).collect());
        codes.get(self.index()).map_or(&[], Vec::as_slice)
    }

    fn compute_categories(self) -> Vec<&'static str> {
        match self {
            Self::Activites | Self::Accompagnements => codes_of(ActivityType::ALL),
            Self::Beneficiaires
            | Self::NouveauxBeneficiaires
            | Self::Orientations
            | Self::DureeMinutes => Vec::new(),
            Self::Thematiques => codes_of(Thematique::mediation()),
            Self::TranchesAge => codes_of(TrancheAge::ALL),
            Self::StatutsSociaux => codes_of(StatutSocial::ALL),
            Self::Autonomie => codes_of(Autonomie::ALL),
            Self::Genres => codes_of(Genre::ALL),
            Self::Durees => codes_of(DurationBand::ALL),
            Self::Lieux => codes_of(PlaceType::ALL),
            Self::Materiel => codes_of(Materiel::ALL),
            Self::Demarches => codes_of(Thematique::administrative()),
            Self::NiveauxAteliers => codes_of(NiveauAtelier::ALL),
        }
    }

    /// Whether the indicator belongs to the common core.
    pub fn is_common_core(self) -> bool {
        Self::COMMON_CORE.contains(&self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_and_modules_partition_the_catalogue() {
        assert_eq!(Indicator::COMMON_CORE.len(), 10);
        assert_eq!(
            Indicator::COMMON_CORE.len() + Indicator::MODULES.len(),
            Indicator::ALL.len()
        );
        for i in Indicator::ALL {
            assert_ne!(i.is_common_core(), Indicator::MODULES.contains(i));
        }
    }

    #[test]
    fn categories_match_kinds() {
        for i in Indicator::ALL {
            let has_categories = !i.categories().is_empty();
            let needs = matches!(i.kind(), IndicatorKind::CountBy | IndicatorKind::Histogram);
            assert_eq!(has_categories, needs, "{i}");
        }
        assert_eq!(Indicator::Thematiques.categories().len(), 19);
        assert_eq!(Indicator::Demarches.categories().len(), 11);
    }
}
