import Foundation

/// Rotary position embedding.
///
/// Two layouts:
/// - `.halfSplit` (GPT-NeoX / Hugging Face Llama): dimension `i` pairs with `i + rotaryDim/2`;
/// - `.interleaved` (GPT-J / Meta's original Llama): dimension `2i` pairs with `2i + 1`.
///
/// The angle of pair `i` at position `p` is `p * invFreq[i]`, with
/// `invFreq[i] = 1 / theta^(2i / rotaryDim)`, optionally rescaled (linear, llama3).
public struct RoPE: Sendable {
    public enum Layout: String, Sendable, Codable { case halfSplit, interleaved }

    /// Frequency rescaling as in `transformers`' `rope_scaling`.
    public enum Scaling: Sendable, Equatable {
        case none
        /// Position interpolation: every frequency divided by `factor`.
        case linear(factor: Float)
        /// Llama 3.1: low frequencies divided by `factor`, high kept, a smooth band between.
        case llama3(factor: Float, lowFreqFactor: Float, highFreqFactor: Float, originalMaxPositions: Int)
        /// LongRoPE (Phi-3): frequency `i` divided by `divisors[i]` (`[rotaryDim / 2]`), cos and
        /// sin multiplied by `attentionScaling`.
        case perFrequency(divisors: [Float], attentionScaling: Float)
        /// YaRN, as transformers computes it: frequency i is `inv / factor` (interpolated) blended
        /// with `inv` (kept) by a ramp from dimension `low` to `high` (where `betaFast` and
        /// `betaSlow` rotations fit in `originalMaxPositions`; floored and ceiled when `truncate`),
        /// cos and sin multiplied by `attentionScaling`.
        case yarn(factor: Float, originalMaxPositions: Int, betaFast: Double, betaSlow: Double, truncate: Bool, attentionScaling: Float)
    }

    public let headDim: Int
    /// Leading dimensions of each head that rotate (== headDim for Llama).
    public let rotaryDim: Int
    public let layout: Layout
    /// `[rotaryDim / 2]`
    public let invFreq: [Float]
    /// Multiplier on cos/sin (1 except for some scaling types).
    public let attentionScaling: Float

    public init(headDim: Int, rotaryDim: Int? = nil, theta: Float, layout: Layout = .halfSplit, scaling: Scaling = .none) {
        let rd = rotaryDim ?? headDim
        precondition(rd % 2 == 0 && rd <= headDim, "RoPE: rotary dim \(rd) must be even and <= head dim \(headDim)")
        self.headDim = headDim
        self.rotaryDim = rd
        self.layout = layout
        var attention: Float = 1
        var f = (0..<(rd / 2)).map { i -> Float in
            // as transformers: 1 / base ** (arange(0, dim, 2).float() / dim), in f32
            let e = Float(2 * i) / Float(rd)
            return 1 / powf(theta, e)
        }
        switch scaling {
        case .none: break
        case let .linear(factor):
            f = f.map { $0 / factor }
        case let .llama3(factor, low, high, orig):
            let lowWavelen = Float(orig) / low
            let highWavelen = Float(orig) / high
            f = f.map { inv in
                let wavelen = 2 * Float.pi / inv
                if wavelen > lowWavelen { return inv / factor }
                if wavelen < highWavelen { return inv }
                let smooth = (Float(orig) / wavelen - low) / (high - low)
                return (1 - smooth) * inv / factor + smooth * inv
            }
        case let .perFrequency(divisors, scale):
            precondition(divisors.count == rd / 2, "RoPE: \(divisors.count) divisors for \(rd / 2) frequencies")
            f = zip(f, divisors).map { $0 / $1 }
            attention = scale
        case let .yarn(factor, orig, fast, slow, truncate, scale):
            let dim = Double(rd), base = Double(theta)
            func correction(_ rotations: Double) -> Double { dim * log(Double(orig) / (rotations * 2 * Double.pi)) / (2 * log(base)) }
            var low = correction(fast), high = correction(slow)
            if truncate { low = low.rounded(.down); high = high.rounded(.up) }
            low = max(low, 0); high = min(high, dim - 1)
            if low == high { high += 0.001 }
            f = (0..<(rd / 2)).map { i -> Float in
                let pos = powf(theta, Float(2 * i) / Float(rd))
                let extrapolation = 1 / pos, interpolation = 1 / (factor * pos)
                let ramp = min(1, max(0, (Float(i) - Float(low)) / Float(high - low)))
                let keep = 1 - ramp
                return interpolation * (1 - keep) + extrapolation * keep
            }
            attention = scale
        }
        self.invFreq = f
        self.attentionScaling = attention
    }

    /// Rotates `x` `[tokens, heads, headDim]` (row stride `ld` elements between tokens) in place;
    /// token `t` is at position `positions[t]`.
    public func apply(_ x: UnsafeMutablePointer<Float>, tokens: Int, heads: Int, ld: Int? = nil, positions: UnsafeBufferPointer<Int32>) {
        precondition(positions.count >= tokens, "RoPE.apply: \(positions.count) positions for \(tokens) tokens")
        let stride = ld ?? heads * headDim
        let half = rotaryDim / 2
        invFreq.withUnsafeBufferPointer { inv in
            for t in 0..<tokens {
                let p = Float(positions[t])
                for i in 0..<half {
                    let angle = p * inv[i]
                    let c = cosf(angle) * attentionScaling, s = sinf(angle) * attentionScaling
                    for h in 0..<heads {
                        let v = x + t * stride + h * headDim
                        let (a, b) = layout == .halfSplit ? (i, i + half) : (2 * i, 2 * i + 1)
                        let x0 = v[a], x1 = v[b]
                        v[a] = x0 * c - x1 * s
                        v[b] = x1 * c + x0 * s
                    }
                }
            }
        }
    }
}
