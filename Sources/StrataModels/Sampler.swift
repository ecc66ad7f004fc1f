import Foundation
import StrataTensor

/// How to pick the next token. `temperature == 0` is greedy (argmax).
public struct SamplingParameters: Sendable, Codable, Equatable {
    public var temperature: Float = 1
    /// Keep only the k most likely tokens (0: off).
    public var topK: Int = 0
    /// Keep the smallest set of most likely tokens whose probability reaches p (1: off).
    public var topP: Float = 1
    /// Seed of the sampler's generator (nil: random). The same seed gives the same tokens.
    public var seed: UInt64? = nil
    public var maxTokens: Int = 128
    /// Generation stops when the text contains one of these (the stop string is not returned).
    public var stopStrings: [String] = []
    /// Stop at an end-of-sequence token.
    public var stopAtEOS: Bool = true

    public init(temperature: Float = 1, topK: Int = 0, topP: Float = 1, seed: UInt64? = nil, maxTokens: Int = 128,
                stopStrings: [String] = [], stopAtEOS: Bool = true) {
        self.temperature = temperature; self.topK = topK; self.topP = topP; self.seed = seed
        self.maxTokens = maxTokens; self.stopStrings = stopStrings; self.stopAtEOS = stopAtEOS
    }

    public static let greedy = SamplingParameters(temperature: 0)

    /// Throws `SamplingError` on values out of range (they come from users).
    public func validate() throws {
        if !(temperature >= 0) || !temperature.isFinite { throw SamplingError.invalid(field: "temperature", reason: "must be >= 0, got \(temperature)") }
        if topK < 0 { throw SamplingError.invalid(field: "top_k", reason: "must be >= 0, got \(topK)") }
        if !(topP > 0 && topP <= 1) { throw SamplingError.invalid(field: "top_p", reason: "must be in (0, 1], got \(topP)") }
        if maxTokens < 0 { throw SamplingError.invalid(field: "max_tokens", reason: "must be >= 0, got \(maxTokens)") }
    }
}

public enum SamplingError: Error, CustomStringConvertible, Equatable, Sendable {
    case invalid(field: String, reason: String)
    public var description: String {
        switch self { case let .invalid(f, r): return "sampling parameter \(f): \(r)" }
    }
}

/// xoshiro256** seeded by SplitMix64: fast, reproducible across runs and platforms.
public struct Xoshiro256: RandomNumberGenerator, Sendable {
    var s: (UInt64, UInt64, UInt64, UInt64)
    public init(seed: UInt64) {
        var x = seed
        func next() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s = (next(), next(), next(), next())
    }
    public mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0; s.3 ^= s.1; s.1 ^= s.2; s.0 ^= s.3
        s.2 ^= t
        s.3 = (s.3 << 45) | (s.3 >> 19)
        return result
    }
    /// Uniform in [0, 1).
    public mutating func nextUnit() -> Double { Double(next() >> 11) * 0x1.0p-53 }
}

/// Picks tokens from logits by `SamplingParameters`. Buffers are sized once for the vocabulary.
public struct Sampler {
    public let parameters: SamplingParameters
    var rng: Xoshiro256
    /// [vocab] candidate ids
    var candidates: [Int32]
    /// [vocab] candidate probabilities
    var probs: [Double]
    /// [topK] (logit, id) of the top-k candidates (capacity kept across tokens)
    var top: [(Float, Int)] = []

    public init(parameters: SamplingParameters, vocabSize: Int) {
        self.parameters = parameters
        rng = Xoshiro256(seed: parameters.seed ?? UInt64.random(in: 0...UInt64.max))
        candidates = [Int32](repeating: 0, count: vocabSize)
        probs = [Double](repeating: 0, count: vocabSize)
    }

    public mutating func sample(_ logits: UnsafeBufferPointer<Float>) -> Int {
        let p = parameters
        let v = logits.count
        if p.temperature == 0 { return Ops.argmax(logits.baseAddress!, count: v) }
        var n: Int
        if p.topK > 0 && p.topK < v {
            Ops.topK(logits.baseAddress!, count: v, k: p.topK, into: &top)
            n = top.count
            for i in 0..<n { candidates[i] = Int32(top[i].1) }
        } else {
            n = v
            for i in 0..<v { candidates[i] = Int32(i) }
            if p.topP < 1 {
                candidates.withUnsafeMutableBufferPointer { c in c.sort { logits[Int($0)] > logits[Int($1)] } }
            }
        }
        var m = -Float.infinity
        for i in 0..<n { m = max(m, logits[Int(candidates[i])]) }
        var sum = 0.0
        let invT = 1 / Double(p.temperature)
        for i in 0..<n {
            let e = exp((Double(logits[Int(candidates[i])]) - Double(m)) * invT)
            probs[i] = e; sum += e
        }
        if p.topP < 1 {
            // candidates are sorted by logit, descending: keep the smallest prefix reaching topP
            var cum = 0.0
            var keep = n
            for i in 0..<n {
                cum += probs[i] / sum
                if cum >= Double(p.topP) { keep = i + 1; break }
            }
            n = keep
            sum = 0
            for i in 0..<n { sum += probs[i] }
        }
        var u = rng.nextUnit() * sum
        for i in 0..<n {
            u -= probs[i]
            if u < 0 { return Int(candidates[i]) }
        }
        return Int(candidates[n - 1])
    }
}
