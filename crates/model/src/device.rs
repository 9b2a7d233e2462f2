//! Device and precision: which device runs the model and at which numeric precision, decided
//! from the configuration and what this machine can do natively.

use serde::{Deserialize, Serialize};

/// Which device runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// CUDA when available, else CPU.
    Auto,
    Cpu,
    Cuda,
}

/// Numeric precision of the model's weights and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PrecisionChoice {
    /// The fastest precision the device runs natively: fp16 on CUDA; bf16 on a
    /// CPU with native bfloat16 (AVX512-BF16, which AMX CPUs also have); fp32
    /// elsewhere (emulated bf16 is slower than fp32).
    Auto,
    Fp32,
    /// CUDA only (CPUs have no fast fp16 convolutions): refused with a warning on CPU.
    Fp16,
    /// bfloat16: fp32's range with 8 bits of mantissa. Native on recent x86
    /// (AVX512-BF16/AMX) and on GPUs from Ampere on.
    Bf16,
}

/// Whether `choice` runs the model on CUDA (`auto`: when a GPU is usable).
pub fn uses_cuda(choice: DeviceChoice) -> bool {
    match choice {
        DeviceChoice::Cpu => false,
        DeviceChoice::Cuda => true,
        DeviceChoice::Auto => tch::Cuda::is_available(),
    }
}

/// Numeric precision the model runs in (see [`PrecisionChoice`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Fp32,
    Fp16,
    Bf16,
}

impl Precision {
    /// "fp32", "fp16" or "bf16" (as [`Precision::as_str`] writes them).
    pub fn parse(s: &str) -> Option<Precision> {
        match s.to_ascii_lowercase().as_str() {
            "fp32" => Some(Precision::Fp32),
            "fp16" => Some(Precision::Fp16),
            "bf16" => Some(Precision::Bf16),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::Bf16 => "bf16",
        }
    }

    /// The libtorch element type of this precision.
    pub(crate) fn kind(self) -> tch::Kind {
        match self {
            Precision::Fp32 => tch::Kind::Float,
            Precision::Fp16 => tch::Kind::Half,
            Precision::Bf16 => tch::Kind::BFloat16,
        }
    }
}

impl From<Precision> for PrecisionChoice {
    /// The configuration value that asks for exactly this precision.
    fn from(p: Precision) -> Self {
        match p {
            Precision::Fp32 => PrecisionChoice::Fp32,
            Precision::Fp16 => PrecisionChoice::Fp16,
            Precision::Bf16 => PrecisionChoice::Bf16,
        }
    }
}

/// Whether this CPU computes bfloat16 natively (AVX512-BF16; AMX CPUs have it
/// too). oneDNN then runs this model ~1.75x faster in bf16 than in fp32;
/// without it, bf16 is emulated and slower than fp32.
pub fn cpu_has_native_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The precision `choice` runs at on CUDA (`cuda`) or on this CPU, before the model is
/// loaded (a model without parameters then still runs fp32: [`crate::TorchBackend::load`]).
pub fn resolve_precision(choice: PrecisionChoice, cuda: bool) -> Precision {
    match choice {
        PrecisionChoice::Auto if cuda => Precision::Fp16,
        PrecisionChoice::Auto if cpu_has_native_bf16() => Precision::Bf16,
        PrecisionChoice::Auto | PrecisionChoice::Fp32 => Precision::Fp32,
        // CPUs have no fast fp16 convolutions (libtorch runs them, slowly).
        PrecisionChoice::Fp16 if !cuda => Precision::Fp32,
        PrecisionChoice::Fp16 => Precision::Fp16,
        PrecisionChoice::Bf16 => Precision::Bf16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_choices_resolve_per_device() {
        use PrecisionChoice as C;
        assert_eq!(resolve_precision(C::Auto, true), Precision::Fp16);
        let cpu_auto = if cpu_has_native_bf16() { Precision::Bf16 } else { Precision::Fp32 };
        assert_eq!(resolve_precision(C::Auto, false), cpu_auto);
        assert_eq!(resolve_precision(C::Fp16, false), Precision::Fp32, "no fp16 on CPU");
        assert_eq!(resolve_precision(C::Fp16, true), Precision::Fp16);
        assert_eq!(resolve_precision(C::Bf16, false), Precision::Bf16);
        assert_eq!(resolve_precision(C::Fp32, true), Precision::Fp32);
    }
}
