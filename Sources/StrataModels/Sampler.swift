import Foundation
import StrataTensor
import StrataFormats

/// How to pick the next token. `temperature == 0` is greedy (argmax). Penalties follow vLLM and
/// the OpenAI API: the repetition penalty (transformers' `repetition_penalty`) divides positive
/// logits and multiplies negative ones of every token in the prompt or the output; presence and
/// frequency penalties subtract from the logits of tokens in the output (once, and per
/// occurrence). Then temperature, top-k, top-p and min-p (tokens below `minP` times the most
/// likely one's probability are dropped).
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
    /// > 1 discourages tokens already in the prompt or output, < 1 encourages them (1: off).
    public var repetitionPenalty: Float = 1
    /// Subtracted once from the logit of every token already in the output (-2...2; 0: off).
    public var presencePenalty: Float = 0
    /// Subtracted per occurrence from the logit of tokens in the output (-2...2; 0: off).
    public var frequencyPenalty: Float = 0
    /// Drop tokens whose probability is below minP x the most likely token's (0: off).
    public var minP: Float = 0
    /// Log-probabilities to report with each token (of the model's distribution, before
    /// penalties and temperature): nil none, 0 the chosen token's, n also the n most likely.
    public var logprobs: Int? = nil
    /// Added to a token's logit before penalties' results are sampled (OpenAI's `logit_bias`,
    /// -100...100); -100 bans the token outright (its logit becomes -inf).
    public var logitBias: [Int: Float] = [:]
    /// Tokens limited to those a grammar allows (structured output, forced tool calls); not
    /// part of the Codable form.
    public var constraint: TokenConstraint? = nil

    public init(temperature: Float = 1, topK: Int = 0, topP: Float = 1, seed: UInt64? = nil, maxTokens: Int = 128,
                stopStrings: [String] = [], stopAtEOS: Bool = true, repetitionPenalty: Float = 1, presencePenalty: Float = 0,
                frequencyPenalty: Float = 0, minP: Float = 0, logprobs: Int? = nil) {
        self.temperature = temperature; self.topK = topK; self.topP = topP; self.seed = seed
        self.maxTokens = maxTokens; self.stopStrings = stopStrings; self.stopAtEOS = stopAtEOS
        self.repetitionPenalty = repetitionPenalty; self.presencePenalty = presencePenalty; self.frequencyPenalty = frequencyPenalty
        self.minP = minP; self.logprobs = logprobs
    }

    enum CodingKeys: String, CodingKey {
        case temperature, topK = "top_k", topP = "top_p", seed, maxTokens = "max_tokens", stopStrings = "stop", stopAtEOS = "stop_at_eos"
        case repetitionPenalty = "repetition_penalty", presencePenalty = "presence_penalty", frequencyPenalty = "frequency_penalty"
        case minP = "min_p", logprobs, logitBias = "logit_bias"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        var p = SamplingParameters()
        p.temperature = try c.decodeIfPresent(Float.self, forKey: .temperature) ?? p.temperature
        p.topK = try c.decodeIfPresent(Int.self, forKey: .topK) ?? p.topK
        p.topP = try c.decodeIfPresent(Float.self, forKey: .topP) ?? p.topP
        p.seed = try c.decodeIfPresent(UInt64.self, forKey: .seed)
        p.maxTokens = try c.decodeIfPresent(Int.self, forKey: .maxTokens) ?? p.maxTokens
        p.stopStrings = try c.decodeIfPresent([String].self, forKey: .stopStrings) ?? p.stopStrings
        p.stopAtEOS = try c.decodeIfPresent(Bool.self, forKey: .stopAtEOS) ?? p.stopAtEOS
        p.repetitionPenalty = try c.decodeIfPresent(Float.self, forKey: .repetitionPenalty) ?? p.repetitionPenalty
        p.presencePenalty = try c.decodeIfPresent(Float.self, forKey: .presencePenalty) ?? p.presencePenalty
        p.frequencyPenalty = try c.decodeIfPresent(Float.self, forKey: .frequencyPenalty) ?? p.frequencyPenalty
        p.minP = try c.decodeIfPresent(Float.self, forKey: .minP) ?? p.minP
        p.logprobs = try c.decodeIfPresent(Int.self, forKey: .logprobs)
        if let b = try c.decodeIfPresent([String: Float].self, forKey: .logitBias) {
            for (k, v) in b {
                guard let id = Int(k) else { throw SamplingError.invalid(field: "logit_bias", reason: "keys are token ids, got '\(k)'") }
                p.logitBias[id] = v
            }
        }
        self = p
    }

    public static let greedy = SamplingParameters(temperature: 0)
    /// The most tokens one request may ask for (2^30: far past any context, small enough that
    /// sizes computed from it cannot overflow).
    public static let maxTokensLimit = 1 << 30

    /// The defaults a model's generation_config.json sets, as vLLM takes them: temperature,
    /// top_k, top_p, min_p, repetition_penalty and max_new_tokens where present (do_sample is
    /// not read; everything else keeps `base`'s value).
    public static func defaults(from g: GenerationConfig?, base: SamplingParameters = SamplingParameters()) -> SamplingParameters {
        var p = base
        guard let g else { return p }
        if let t = g.temperature { p.temperature = Float(t) }
        if let k = g.topK { p.topK = max(0, k) }
        if let t = g.topP { p.topP = Float(t) }
        if let m = g.minP { p.minP = Float(m) }
        if let r = g.repetitionPenalty { p.repetitionPenalty = Float(r) }
        if let n = g.maxNewTokens { p.maxTokens = n }
        return p
    }

    /// Whether any penalty needs the token history.
    var penalized: Bool { repetitionPenalty != 1 || presencePenalty != 0 || frequencyPenalty != 0 }

    /// Throws `SamplingError` on values out of range (they come from users).
    public func validate() throws {
        if !(temperature >= 0) || !temperature.isFinite { throw SamplingError.invalid(field: "temperature", reason: "must be >= 0, got \(temperature)") }
        if topK < 0 { throw SamplingError.invalid(field: "top_k", reason: "must be >= 0, got \(topK)") }
        if !(topP > 0 && topP <= 1) { throw SamplingError.invalid(field: "top_p", reason: "must be in (0, 1], got \(topP)") }
        if maxTokens < 0 || maxTokens > SamplingParameters.maxTokensLimit {
            throw SamplingError.invalid(field: "max_tokens", reason: "must be in 0...\(SamplingParameters.maxTokensLimit), got \(maxTokens)")
        }
        if !(repetitionPenalty > 0) || !repetitionPenalty.isFinite {
            throw SamplingError.invalid(field: "repetition_penalty", reason: "must be > 0, got \(repetitionPenalty)")
        }
        for (t, b) in logitBias where t < 0 || !(b >= -100 && b <= 100) {
            throw SamplingError.invalid(field: "logit_bias", reason: "token \(t): ids must be >= 0 and biases in [-100, 100], got \(b)")
        }
        if !(presencePenalty >= -2 && presencePenalty <= 2) { throw SamplingError.invalid(field: "presence_penalty", reason: "must be in [-2, 2], got \(presencePenalty)") }
        if !(frequencyPenalty >= -2 && frequencyPenalty <= 2) { throw SamplingError.invalid(field: "frequency_penalty", reason: "must be in [-2, 2], got \(frequencyPenalty)") }
        if !(minP >= 0 && minP <= 1) { throw SamplingError.invalid(field: "min_p", reason: "must be in [0, 1], got \(minP)") }
        if let n = logprobs, n < 0 || n > 20 { throw SamplingError.invalid(field: "top_logprobs", reason: "must be in [0, 20], got \(n)") }
    }
}

/// A token and its log-probability.
public struct TokenLogprob: Sendable, Equatable {
    public var id: Int
    public var logprob: Float
    public init(id: Int, logprob: Float) { self.id = id; self.logprob = logprob }
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

/// Picks tokens from logits by `SamplingParameters`. Buffers are sized once for the vocabulary
/// (the penalty buffers only when a penalty is set); the sampler keeps the token history the
/// penalties need: the prompt given at the start, then every token it picks.
public struct Sampler {
    public let parameters: SamplingParameters
    var rng: Xoshiro256
    /// [vocab] candidate ids
    var candidates: [Int32]
    /// [vocab] candidate probabilities
    var probs: [Double]
    /// [topK] (logit, id) of the top-k candidates (capacity kept across tokens)
    var top: [(Float, Int)] = []
    /// [vocab] penalized logits; [vocab] times each id was generated; [vocab] in the prompt
    var adjusted: [Float] = []
    var outputCounts: [Int32] = []
    var inPrompt: [Bool] = []
    /// distinct ids in the prompt or the output (where the penalties apply)
    var seen: [Int32] = []
    /// The chosen token's log-probability and the most likely ones' (when `logprobs` is set).
    public private(set) var lastLogprob: Float = 0
    public private(set) var lastTopLogprobs: [TokenLogprob] = []

    public init(parameters: SamplingParameters, vocabSize: Int, prompt: [Int] = []) {
        self.parameters = parameters
        rng = Xoshiro256(seed: parameters.seed ?? UInt64.random(in: 0...UInt64.max))
        candidates = [Int32](repeating: 0, count: vocabSize)
        probs = [Double](repeating: 0, count: vocabSize)
        if parameters.penalized || !parameters.logitBias.isEmpty || parameters.constraint != nil { adjusted = [Float](repeating: 0, count: vocabSize) }
        if parameters.penalized {
            outputCounts = [Int32](repeating: 0, count: vocabSize)
            inPrompt = [Bool](repeating: false, count: vocabSize)
            for t in prompt where t >= 0 && t < vocabSize && !inPrompt[t] {
                inPrompt[t] = true
                seen.append(Int32(t))
            }
        }
    }

    /// The next token from `logits` (one row of the vocabulary); the token joins the history.
    /// `allowed` (a constraint's distances, `TokenConstraint.distances`): only tokens whose
    /// distance is at most `limit` are candidates (when none is, those of the smallest distance).
    public mutating func sample(_ logits: UnsafeBufferPointer<Float>, allowed: [UInt16]? = nil, limit: Int = Int(UInt16.max) - 1) -> Int {
        let p = parameters
        if let n = p.logprobs { computeLogprobs(logits, top: n) }
        let next: Int
        if p.penalized || !p.logitBias.isEmpty || allowed != nil {
            adjusted.withUnsafeMutableBufferPointer { a in
                _ = a.initialize(from: logits)
                if p.penalized {
                    for t32 in seen {
                        let t = Int(t32)
                        var l = a[t]
                        if p.repetitionPenalty != 1 { l = l > 0 ? l / p.repetitionPenalty : l * p.repetitionPenalty }
                        let c = outputCounts[t]
                        if c > 0 { l -= p.frequencyPenalty * Float(c) + p.presencePenalty }
                        a[t] = l
                    }
                }
                for (t, b) in p.logitBias where t < a.count { a[t] = b <= -100 ? -.infinity : a[t] + b }
                if let allowed {
                    var best = Int(TokenConstraint.refused)
                    for d in allowed where Int(d) < best { best = Int(d) }
                    let cut = UInt16(max(min(limit, Int(TokenConstraint.refused) - 1), best))
                    for i in 0..<min(a.count, allowed.count) where allowed[i] > cut { a[i] = -.infinity }
                    for i in allowed.count..<a.count { a[i] = -.infinity }
                }
            }
            next = adjusted.withUnsafeBufferPointer { pick($0) }
            if p.penalized {
                if outputCounts[next] == 0 && !inPrompt[next] { seen.append(Int32(next)) }
                outputCounts[next] += 1
            }
        } else {
            next = pick(logits)
        }
        if p.logprobs != nil { lastLogprob = Float(Double(logits[next]) - logSumExp) }
        return next
    }

    var logSumExp = 0.0

    /// The log-probability of `token` under `logits` (log-softmax, in doubles) and the `top` most
    /// likely tokens' (prompt log-probabilities use it; sampling computes the same in `computeLogprobs`).
    public static func logprob(of token: Int, in logits: UnsafeBufferPointer<Float>, top n: Int) -> (Float, [TokenLogprob]) {
        var m = -Float.infinity
        for x in logits { m = max(m, x) }
        var sum = 0.0
        for x in logits { sum += exp(Double(x - m)) }
        let lse = Double(m) + log(sum)
        var alternatives: [TokenLogprob] = []
        if n > 0 {
            var top: [(Float, Int)] = []
            Ops.topK(logits.baseAddress!, count: logits.count, k: n, into: &top)
            alternatives = top.map { TokenLogprob(id: $0.1, logprob: Float(Double($0.0) - lse)) }
        }
        return (Float(Double(logits[token]) - lse), alternatives)
    }

    mutating func computeLogprobs(_ logits: UnsafeBufferPointer<Float>, top n: Int) {
        var m = -Float.infinity
        for x in logits { m = max(m, x) }
        var sum = 0.0
        for x in logits { sum += exp(Double(x - m)) }
        logSumExp = Double(m) + log(sum)
        lastTopLogprobs.removeAll(keepingCapacity: true)
        if n > 0 {
            Ops.topK(logits.baseAddress!, count: logits.count, k: n, into: &top)
            for (l, id) in top { lastTopLogprobs.append(TokenLogprob(id: id, logprob: Float(Double(l) - logSumExp))) }
        }
    }

    mutating func pick(_ logits: UnsafeBufferPointer<Float>) -> Int {
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
        if p.minP > 0 {
            // the most likely candidate has probability 1 before normalization (exp(0))
            let floor = Double(p.minP)
            var kept = 0
            sum = 0
            for i in 0..<n where probs[i] >= floor {
                candidates[kept] = candidates[i]; probs[kept] = probs[i]
                sum += probs[i]
                kept += 1
            }
            n = kept
        }
        var u = rng.nextUnit() * sum
        for i in 0..<n {
            u -= probs[i]
            if u < 0 { return Int(candidates[i]) }
        }
        return Int(candidates[n - 1])
    }
}
