#![doc = include_str!("../README.md")]

pub mod aggregate;
pub mod artifacts;
pub mod calibrate;
pub mod circuit;
pub mod error;
pub mod evm;
pub mod model;
pub mod onchain;
pub mod ops;
pub mod pipeline;
pub mod progress;
pub mod prove;
pub mod service;
pub mod settings;

pub use error::{Error, Result};
