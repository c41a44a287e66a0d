//! faultline-node
