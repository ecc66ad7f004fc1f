import Foundation
import StrataJSON
import StrataTensor

/// Errors reading `config.json`, `generation_config.json` or `tokenizer.json`; each names the
/// file and the field.
public enum ConfigError: Error, CustomStringConvertible, Equatable, Sendable {
    case missingFile(path: String)
    case malformed(file: String, field: String, reason: String)
    case unsupportedArchitecture(file: String, architecture: String, supported: [String])
    case unsupportedRopeType(file: String, ropeType: String)
    case invalidValue(file: String, field: String, reason: String)

    public var description: String {
        switch self {
        case let .missingFile(p): return "\(p): file not found"
        case let .malformed(f, field, r): return "\(f): field '\(field)': \(r)"
        case let .unsupportedArchitecture(f, a, s):
            return "\(f): unsupported architecture '\(a)' (supported: \(s.joined(separator: ", ")))"
        case let .unsupportedRopeType(f, t): return "\(f): unsupported rope type '\(t)' (supported: default, linear, llama3, longrope, yarn)"
        case let .invalidValue(f, field, r): return "\(f): field '\(field)': \(r)"
        }
    }
}

/// Decodes a JSON file into `T`, turning `DecodingError`s into `ConfigError.malformed` naming
/// the file and the field path.
package func decodeJSONFile<T: Decodable>(_ type: T.Type, path: String) throws -> T {
    guard let data = try FileIO.readSmallFile(path) else { throw ConfigError.missingFile(path: path) }
    return try decodeJSON(type, data: data, file: path)
}

package func decodeJSON<T: Decodable>(_ type: T.Type, data raw: Data, file: String) throws -> T {
    // a key written twice keeps its last value, as Python reads it
    var data = raw
    if let v = try? JSONValue.parse(raw), v.hasDuplicateKeys { data = Data(v.lastValueWins.compact.utf8) }
    do {
        return try JSONDecoder().decode(T.self, from: data)
    } catch let e as DecodingError {
        func path(_ c: [CodingKey]) -> String { c.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".") }
        switch e {
        case let .keyNotFound(k, ctx):
            throw ConfigError.malformed(file: file, field: (ctx.codingPath.map { $0.stringValue } + [k.stringValue]).joined(separator: "."), reason: "missing")
        case let .typeMismatch(_, ctx), let .valueNotFound(_, ctx):
            throw ConfigError.malformed(file: file, field: path(ctx.codingPath), reason: ctx.debugDescription)
        case let .dataCorrupted(ctx):
            throw ConfigError.malformed(file: file, field: ctx.codingPath.isEmpty ? "(document)" : path(ctx.codingPath), reason: "not valid JSON: \(ctx.debugDescription)")
        @unknown default:
            throw ConfigError.malformed(file: file, field: "?", reason: "\(e)")
        }
    } catch let e as ConfigError {
        throw e
    } catch {
        throw ConfigError.malformed(file: file, field: "(document)", reason: "\(error)")
    }
}

/// A token id or a list of them (`eos_token_id` is either in HF configs).
public struct TokenIDs: Codable, Sendable, Equatable {
    public var ids: [Int]
    public init(_ ids: [Int]) { self.ids = ids }
    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { ids = [] } else if let one = try? c.decode(Int.self) { ids = [one] } else { ids = try c.decode([Int].self) }
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        if ids.count == 1 { try c.encode(ids[0]) } else { try c.encode(ids) }
    }
}

/// The first fields of any `config.json`: which architecture it is.
public struct ArchitectureProbe: Decodable, Sendable {
    public var architectures: [String]?
    public var modelType: String?
    enum CodingKeys: String, CodingKey { case architectures, modelType = "model_type" }
}

/// The storage dtype a `config.json` declares: `torch_dtype` (transformers < 5) or `dtype`
/// (transformers >= 5), `float32` / `float16` / `bfloat16`.
public struct ConfigDType: Decodable, Sendable {
    public var torchDType: String?
    public var dtype: String?
    enum CodingKeys: String, CodingKey { case torchDType = "torch_dtype", dtype }

    /// The dtype declared by `config.json` in `directory`, nil when it declares none; a value that
    /// is not one of the three throws naming the field.
    public static func load(_ config: ConfigFile) throws -> DType? {
        let path = config.path
        let c = try config.decode(ConfigDType.self)
        let (field, value) = c.dtype.map { ("dtype", $0) } ?? c.torchDType.map { ("torch_dtype", $0) } ?? ("", "")
        if field.isEmpty { return nil }
        switch value {
        case "float32": return .f32
        case "float16": return .f16
        case "bfloat16": return .bf16
        default:
            throw ConfigError.invalidValue(file: path, field: field, reason: "'\(value)' is not float32, float16 or bfloat16 (pass --dtype)")
        }
    }
}

/// `generation_config.json` (optional): BOS/EOS ids and sampling defaults.
public struct GenerationConfig: Codable, Sendable {
    public var bosTokenID: TokenIDs?
    public var eosTokenID: TokenIDs?
    public var temperature: Double?
    public var topK: Int?
    public var topP: Double?
    public var minP: Double?
    public var repetitionPenalty: Double?
    public var maxNewTokens: Int?
    enum CodingKeys: String, CodingKey {
        case bosTokenID = "bos_token_id", eosTokenID = "eos_token_id", temperature, topK = "top_k", topP = "top_p"
        case minP = "min_p", repetitionPenalty = "repetition_penalty", maxNewTokens = "max_new_tokens"
    }

    /// Reads `generation_config.json` in `directory`, or nil when there is none.
    public static func load(directory: String) throws -> GenerationConfig? {
        let p = (directory as NSString).appendingPathComponent("generation_config.json")
        guard FileManager.default.fileExists(atPath: p) else { return nil }
        return try decodeJSONFile(GenerationConfig.self, path: p)
    }
}

/// Rotary settings from a config: `rope_parameters` (transformers >= 5) or
/// `rope_theta` + `rope_scaling` (older checkpoints). Types: default, linear, llama3, longrope, yarn.
public struct RopeSettings: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case none
        case linear(factor: Double)
        case llama3(factor: Double, lowFreqFactor: Double, highFreqFactor: Double, originalMaxPositions: Int)
        /// Phi-3's LongRoPE: frequencies divided by `short` up to `originalMaxPositions` positions in a
        /// forward call, by `long` beyond; cos/sin times `attentionFactor` (nil: from `factor`, or
        /// from max_position_embeddings / originalMaxPositions, as transformers derives it).
        case longrope(short: [Double], long: [Double], originalMaxPositions: Int, factor: Double?, attentionFactor: Double?)
        /// YaRN (gpt-oss, Qwen's long-context configs, DeepSeek): frequencies between interpolation
        /// by `factor` and none, by a ramp over the dimensions the `betaFast`/`betaSlow` rotation
        /// counts give at `originalMaxPositions` (rounded out to whole dimensions unless `truncate`
        /// is false), cos/sin times the attention factor (`attention_factor`, else 0.1 ln(factor)
        /// + 1, or its ratio for `mscale`/`mscale_all_dim`).
        case yarn(factor: Double, originalMaxPositions: Int, betaFast: Double, betaSlow: Double, truncate: Bool,
                  attentionFactor: Double?, mscale: Double?, mscaleAllDim: Double?)
    }
    public var theta: Double
    public var kind: Kind
    /// Fraction of each head's dimensions that rotate (Phi-3 and others: `partial_rotary_factor`).
    public var partialRotaryFactor: Double = 1

    private struct Params: Decodable {
        var ropeType: String?
        var type: String?
        var ropeTheta: Double?
        var factor: Double?
        var lowFreqFactor: Double?
        var highFreqFactor: Double?
        var originalMaxPositionEmbeddings: Int?
        var shortFactor: [Double]?
        var longFactor: [Double]?
        var attentionFactor: Double?
        var partialRotaryFactor: Double?
        var betaFast: Double?, betaSlow: Double?, truncate: Bool?, mscale: Double?, mscaleAllDim: Double?
        /// These settings with every field `other` sets replaced (Python's dict.update).
        func updated(by other: Params) -> Params {
            var p = self
            p.ropeType = other.ropeType ?? p.ropeType; p.type = other.type ?? p.type; p.ropeTheta = other.ropeTheta ?? p.ropeTheta
            p.factor = other.factor ?? p.factor; p.lowFreqFactor = other.lowFreqFactor ?? p.lowFreqFactor
            p.highFreqFactor = other.highFreqFactor ?? p.highFreqFactor
            p.originalMaxPositionEmbeddings = other.originalMaxPositionEmbeddings ?? p.originalMaxPositionEmbeddings
            p.shortFactor = other.shortFactor ?? p.shortFactor; p.longFactor = other.longFactor ?? p.longFactor
            p.attentionFactor = other.attentionFactor ?? p.attentionFactor; p.partialRotaryFactor = other.partialRotaryFactor ?? p.partialRotaryFactor
            p.betaFast = other.betaFast ?? p.betaFast; p.betaSlow = other.betaSlow ?? p.betaSlow; p.truncate = other.truncate ?? p.truncate
            p.mscale = other.mscale ?? p.mscale; p.mscaleAllDim = other.mscaleAllDim ?? p.mscaleAllDim
            return p
        }
        enum CodingKeys: String, CodingKey {
            case ropeType = "rope_type", type, ropeTheta = "rope_theta", factor
            case lowFreqFactor = "low_freq_factor", highFreqFactor = "high_freq_factor"
            case originalMaxPositionEmbeddings = "original_max_position_embeddings"
            case shortFactor = "short_factor", longFactor = "long_factor", attentionFactor = "attention_factor"
            case partialRotaryFactor = "partial_rotary_factor"
            case betaFast = "beta_fast", betaSlow = "beta_slow", truncate, mscale, mscaleAllDim = "mscale_all_dim"
        }
    }

    private enum Keys: String, CodingKey {
        case ropeTheta = "rope_theta", ropeScaling = "rope_scaling", ropeParameters = "rope_parameters"
        case partialRotaryFactor = "partial_rotary_factor", originalMaxPositionEmbeddings = "original_max_position_embeddings"
        case maxPositionEmbeddings = "max_position_embeddings"
    }

    /// Decodes from the config's top level; `defaultTheta` is the architecture's default.
    public static func decode(from decoder: Decoder, defaultTheta: Double, file: String) throws -> RopeSettings {
        let c = try decoder.container(keyedBy: Keys.self)
        let params = try c.decodeIfPresent(Params.self, forKey: .ropeParameters)
        let scaling = try c.decodeIfPresent(Params.self, forKey: .ropeScaling)
        let topTheta = try c.decodeIfPresent(Double.self, forKey: .ropeTheta)
        let theta = params?.ropeTheta ?? topTheta ?? defaultTheta
        guard theta > 0 else { throw ConfigError.invalidValue(file: file, field: "rope_theta", reason: "must be positive, got \(theta)") }
        let p = scaling ?? params
        let type = p?.ropeType ?? p?.type ?? "default"
        let partial = try params?.partialRotaryFactor ?? c.decodeIfPresent(Double.self, forKey: .partialRotaryFactor) ?? 1
        guard partial > 0 && partial <= 1 else {
            throw ConfigError.invalidValue(file: file, field: "partial_rotary_factor", reason: "must be in (0, 1], got \(partial)")
        }
        var settings = try kind(type: type, p, c, theta: theta, file: file)
        settings.partialRotaryFactor = partial
        return settings
    }

    private enum LayerTypeKeys: String, CodingKey {
        case ropeTheta = "rope_theta", ropeScaling = "rope_scaling", ropeParameters = "rope_parameters"
        case localBase = "rope_local_base_freq"
    }

    /// Rotary settings per layer type (Gemma-3): `rope_parameters` {"full_attention": {...},
    /// "sliding_attention": {...}} (transformers >= 5), or the older `rope_theta` and `rope_scaling`
    /// (full-attention layers) with `rope_local_base_freq` (sliding layers, never scaled).
    public static func decodePerLayerType(from decoder: Decoder, defaultTheta: (full: Double, sliding: Double), file: String)
        throws -> (full: RopeSettings, sliding: RopeSettings) {
        let c = try decoder.container(keyedBy: LayerTypeKeys.self)
        func settings(_ p: Params?, theta: Double, field: String) throws -> RopeSettings {
            guard theta > 0 else { throw ConfigError.invalidValue(file: file, field: field, reason: "must be positive, got \(theta)") }
            if let partial = p?.partialRotaryFactor, partial != 1 {
                throw ConfigError.invalidValue(file: file, field: field, reason: "partial_rotary_factor \(partial) is not supported here")
            }
            let inner = try decoder.container(keyedBy: Keys.self)
            return try kind(type: p?.ropeType ?? p?.type ?? "default", p, inner, theta: theta, file: file)
        }
        if c.contains(.ropeParameters) {
            let byType: [String: Params]
            do { byType = try c.decode([String: Params].self, forKey: .ropeParameters) } catch {
                throw ConfigError.malformed(file: file, field: "rope_parameters", reason: "expected an object of full_attention and sliding_attention settings")
            }
            if let other = byType.keys.first(where: { $0 != "full_attention" && $0 != "sliding_attention" }) {
                throw ConfigError.invalidValue(file: file, field: "rope_parameters.\(other)", reason: "not a layer type (full_attention, sliding_attention)")
            }
            var full = byType["full_attention"]
            let sliding = byType["sliding_attention"]
            // transformers: rope_scaling beside rope_parameters updates the full-attention entry
            if let scaling = try c.decodeIfPresent(Params.self, forKey: .ropeScaling) { full = (full ?? Params()).updated(by: scaling) }
            return (try settings(full, theta: full?.ropeTheta ?? defaultTheta.full, field: "rope_parameters.full_attention.rope_theta"),
                    try settings(sliding, theta: sliding?.ropeTheta ?? defaultTheta.sliding, field: "rope_parameters.sliding_attention.rope_theta"))
        }
        let scaling = try c.decodeIfPresent(Params.self, forKey: .ropeScaling)
        return (try settings(scaling, theta: c.decodeIfPresent(Double.self, forKey: .ropeTheta) ?? defaultTheta.full, field: "rope_theta"),
                try settings(nil, theta: c.decodeIfPresent(Double.self, forKey: .localBase) ?? defaultTheta.sliding, field: "rope_local_base_freq"))
    }

    /// YaRN's factor on cos and sin, as transformers: `attention_factor`, else the ratio of
    /// 0.1 m ln(factor) + 1 for `mscale` and `mscale_all_dim` when both are set, else 0.1 ln(factor) + 1
    /// (1 for a factor <= 1).
    public static func yarnAttention(factor: Double, attention: Double?, mscale: Double?, mscaleAllDim: Double?) -> Double {
        if let attention { return attention }
        func get(_ m: Double) -> Double { factor <= 1 ? 1 : 0.1 * m * log(factor) + 1 }
        if let m = mscale, let a = mscaleAllDim, m != 0, a != 0 { return get(m) / get(a) }
        return get(1)
    }

    private static func kind(type: String, _ p: Params?, _ c: KeyedDecodingContainer<Keys>, theta: Double, file: String) throws -> RopeSettings {
        switch type {
        case "default":
            return RopeSettings(theta: theta, kind: .none)
        case "longrope", "su":
            guard let short = p?.shortFactor, let long = p?.longFactor, short.count == long.count, !short.isEmpty,
                  (short + long).allSatisfy({ $0 > 0 }) else {
                throw ConfigError.malformed(file: file, field: "rope_scaling", reason: "longrope needs short_factor and long_factor, positive, of equal length")
            }
            let orig = try p?.originalMaxPositionEmbeddings ?? c.decodeIfPresent(Int.self, forKey: .originalMaxPositionEmbeddings)
            guard let orig, orig > 0 else {
                throw ConfigError.malformed(file: file, field: "original_max_position_embeddings", reason: "longrope needs it, positive")
            }
            return RopeSettings(theta: theta, kind: .longrope(short: short, long: long, originalMaxPositions: orig,
                                                               factor: p?.factor, attentionFactor: p?.attentionFactor))
        case "linear":
            guard let f = p?.factor, f > 0 else { throw ConfigError.malformed(file: file, field: "rope_scaling.factor", reason: "missing or not positive") }
            return RopeSettings(theta: theta, kind: .linear(factor: f))
        case "llama3":
            guard let f = p?.factor, let lo = p?.lowFreqFactor, let hi = p?.highFreqFactor, let orig = p?.originalMaxPositionEmbeddings,
                  f > 0, hi > lo, orig > 0 else {
                throw ConfigError.malformed(file: file, field: "rope_scaling", reason: "llama3 needs factor, low_freq_factor < high_freq_factor, original_max_position_embeddings")
            }
            return RopeSettings(theta: theta, kind: .llama3(factor: f, lowFreqFactor: lo, highFreqFactor: hi, originalMaxPositions: orig))
        case "yarn":
            // as transformers: original_max_position_embeddings in the rope settings (or at the top);
            // no factor: max_position_embeddings / original
            let orig = try p?.originalMaxPositionEmbeddings ?? c.decodeIfPresent(Int.self, forKey: .originalMaxPositionEmbeddings)
            guard let orig, orig > 0 else {
                throw ConfigError.malformed(file: file, field: "rope_scaling.original_max_position_embeddings", reason: "yarn needs it, positive")
            }
            var factor = p?.factor
            if factor == nil, let maxPos = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) { factor = Double(maxPos) / Double(orig) }
            guard let f = factor, f > 0, f.isFinite else { throw ConfigError.malformed(file: file, field: "rope_scaling.factor", reason: "missing or not positive") }
            // transformers: `beta_fast or 32`, `beta_slow or 1` (a zero means the default)
            let fast = p?.betaFast.flatMap { $0 == 0 ? nil : $0 } ?? 32, slow = p?.betaSlow.flatMap { $0 == 0 ? nil : $0 } ?? 1
            guard fast > 0, slow > 0, fast.isFinite, slow.isFinite else {
                throw ConfigError.malformed(file: file, field: "rope_scaling.beta_fast", reason: "beta_fast \(fast) and beta_slow \(slow) must be positive")
            }
            if let a = p?.attentionFactor, !(a > 0 && a.isFinite) {
                throw ConfigError.malformed(file: file, field: "rope_scaling.attention_factor", reason: "must be positive, got \(a)")
            }
            return RopeSettings(theta: theta, kind: .yarn(factor: f, originalMaxPositions: orig, betaFast: fast, betaSlow: slow, truncate: p?.truncate ?? true,
                                                           attentionFactor: p?.attentionFactor, mscale: p?.mscale, mscaleAllDim: p?.mscaleAllDim))
        default:
            throw ConfigError.unsupportedRopeType(file: file, ropeType: type)
        }
    }
}

/// `CodingUserInfoKey` under which the config's file path travels into `init(from:)`.
package let configFileKey = CodingUserInfoKey(rawValue: "strata.configFile")!
/// `CodingUserInfoKey` under which a config's `WeightLayout` travels into `init(from:)`.
package let weightLayoutKey = CodingUserInfoKey(rawValue: "strata.weightLayout")!

/// How a file's weights differ from the Hugging Face layout the architecture's code reads: what
/// llama.cpp's converter changed when it wrote a GGUF. Travels beside the config (never read from
/// a config.json, where such a key would silently change the model).
public struct WeightLayout: OptionSet, Sendable, Hashable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    /// Llama's Q and K rows permuted per head into RoPE's interleaved layout.
    public static let ropeInterleaved = WeightLayout(rawValue: 1)
    /// Gemma's RMSNorm weights stored as 1 + w.
    public static let normWeightsIncludeOne = WeightLayout(rawValue: 2)
    /// GPT-2's Conv1D weights stored transposed, `[out, in]`.
    public static let linearOutIn = WeightLayout(rawValue: 4)

    /// The layout `decoder` carries (none for a config.json).
    public static func of(_ decoder: Decoder) -> WeightLayout { decoder.userInfo[weightLayoutKey] as? WeightLayout ?? [] }
}

/// A `config.json` read once: its path (for error messages) and bytes. Every decoder of the
/// config (architecture probe, shape, dtype) decodes these bytes, not the file again.
public struct ConfigFile: Sendable {
    public let path: String
    public let data: Data
    /// How the weights beside this config differ from the HF layout (a GGUF's; none for a folder).
    public var layout: WeightLayout = []

    /// Reads the file at `path` (missing: `ConfigError.missingFile`).
    public init(path: String) throws {
        guard let data = try FileIO.readSmallFile(path) else { throw ConfigError.missingFile(path: path) }
        self.init(path: path, data: data)
    }

    /// A key written twice keeps its last value, as Python's `json` (and so transformers)
    /// reads it; Foundation's decoder would keep the first.
    public init(path: String, data: Data, layout: WeightLayout = []) {
        self.path = path
        self.layout = layout
        if let v = try? JSONValue.parse(data), v.hasDuplicateKeys {
            self.data = Data(v.lastValueWins.compact.utf8)
        } else {
            self.data = data
        }
    }

    /// The shape fields every architecture multiplies together, bounded before any of them is
    /// used (so `num_attention_heads x head_dim` cannot overflow): each must be an integer in
    /// 0...2^24 where present. The architecture's spec checks the exact ranges after.
    public static let shapeFields = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                                     "num_key_value_heads", "head_dim", "max_position_embeddings", "sliding_window",
                                     "n_embd", "n_head", "n_layer", "n_positions", "n_inner", "n_ctx", "original_max_position_embeddings"]

    public func checkShapeFields() throws {
        guard let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { return }
        var objects: [[String: Any]] = [obj]
        if let text = obj["text_config"] as? [String: Any] { objects.append(text) }
        for o in objects {
            for f in ["rms_norm_eps", "layer_norm_epsilon", "layer_norm_eps"] {
                guard let v = o[f], !(v is NSNull) else { continue }
                guard let n = v as? NSNumber, n.doubleValue.isFinite, n.doubleValue > 0, n.doubleValue < 1 else {
                    throw ConfigError.invalidValue(file: path, field: f, reason: "must be a number in (0, 1), got \(v)")
                }
            }
            for f in Self.shapeFields {
                guard let v = o[f], !(v is NSNull) else { continue }
                guard let n = v as? NSNumber else {
                    throw ConfigError.invalidValue(file: path, field: f, reason: "expected an integer, got \(v)")
                }
                let d = n.doubleValue
                if !(d >= 0 && d <= Double(1 << 24)) || d != d.rounded() {
                    throw ConfigError.invalidValue(file: path, field: f, reason: "must be an integer in 0...\(1 << 24), got \(n)")
                }
            }
        }
    }

    /// `config.json` in `directory`.
    public init(directory: String) throws { try self.init(path: (directory as NSString).appendingPathComponent("config.json")) }

    /// The bytes decoded into `T`, with the path in `userInfo[configFileKey]`; decoding errors
    /// become `ConfigError`s naming the file and field.
    public func decode<T: Decodable>(_ type: T.Type) throws -> T {
        let dec = JSONDecoder()
        dec.userInfo[configFileKey] = path
        dec.userInfo[weightLayoutKey] = layout
        do {
            return try dec.decode(T.self, from: data)
        } catch is DecodingError {
            return try decodeJSON(T.self, data: data, file: path)  // its messages name the field
        }
    }
}

extension JSONValue {
    /// Whether an object anywhere in the document names a key twice.
    var hasDuplicateKeys: Bool {
        switch self {
        case let .object(pairs):
            var seen = Set<String>()
            for (k, v) in pairs { if !seen.insert(k).inserted || v.hasDuplicateKeys { return true } }
            return false
        case let .array(a): return a.contains { $0.hasDuplicateKeys }
        default: return false
        }
    }

    /// The document with each repeated key keeping its first place and its last value (Python's dict).
    var lastValueWins: JSONValue {
        switch self {
        case let .object(pairs):
            var order: [String] = [], values: [String: JSONValue] = [:]
            for (k, v) in pairs {
                if values[k] == nil { order.append(k) }
                values[k] = v.lastValueWins
            }
            return .object(order.map { ($0, values[$0]!) })
        case let .array(a): return .array(a.map(\.lastValueWins))
        default: return self
        }
    }
}

/// Decodes `config.json` at `path` into `T`, passing the path through `userInfo[configFileKey]`.
package func decodeConfig<T: Decodable>(_ type: T.Type, path: String) throws -> T {
    try ConfigFile(path: path).decode(T.self)
}
