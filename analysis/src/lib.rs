//! Statistics over recorded routing (frequency, nPMI, risk difference, ...); see issue on the analysis layer.
