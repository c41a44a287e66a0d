//! faultline-nemesis
