//! Integration tests of `maillage-protocol`, as one test binary.

mod aggregate_vectors;
mod checkpoint_vectors;
mod merkle_vectors;
mod release_vectors;
