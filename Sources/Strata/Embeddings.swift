import Foundation
import StrataFormats
import StrataModels

/// How a model's hidden states become one embedding per input: as its sentence-transformers
/// config says (`modules.json` naming a `Pooling` module whose `config.json` sets
/// `pooling_mode_mean_tokens`, `pooling_mode_cls_token`, `pooling_mode_lasttoken` or
/// `pooling_mode_max_tokens`, and a `Normalize` module), else the last token's state, L2-normalized
/// (what vLLM gives decoder models).
public struct EmbeddingPooling: Sendable, Equatable {
    public enum Mode: String, Sendable { case mean, cls, last, max }
    public var mode: Mode
    public var normalize: Bool
    /// Where it came from (`modules.json` path, or "default").
    public var origin: String

    public init(mode: Mode, normalize: Bool, origin: String) { self.mode = mode; self.normalize = normalize; self.origin = origin }

    public static let decoderDefault = EmbeddingPooling(mode: .last, normalize: true, origin: "default (last token, normalized)")

    /// The pooling of the model folder `directory` (a GGUF file has none: the default).
    public static func read(directory: String) throws -> EmbeddingPooling {
        let modules = (directory as NSString).appendingPathComponent("modules.json")
        guard let data = try FileIO.readSmallFile(modules) else { return .decoderDefault }
        guard case let .array(items) = try JSONValue.parse(data) else {
            throw ConfigError.invalidValue(file: modules, field: "(document)", reason: "expected an array of modules")
        }
        var pooling: EmbeddingPooling? = nil
        var normalize = false
        for (i, m) in items.enumerated() {
            let type = m["type"]?.stringValue ?? ""
            if type.hasSuffix("Normalize") { normalize = true; continue }
            guard type.hasSuffix("Pooling") else { continue }
            guard let path = m["path"]?.stringValue else { throw ConfigError.invalidValue(file: modules, field: "[\(i)].path", reason: "missing") }
            let cfgPath = ((directory as NSString).appendingPathComponent(path) as NSString).appendingPathComponent("config.json")
            guard let cdata = try FileIO.readSmallFile(cfgPath) else { throw ConfigError.missingFile(path: cfgPath) }
            let cfg = try JSONValue.parse(cdata)
            let modes: [(String, Mode)] = [("pooling_mode_mean_tokens", .mean), ("pooling_mode_cls_token", .cls),
                                           ("pooling_mode_lasttoken", .last), ("pooling_mode_max_tokens", .max)]
            let on = modes.filter { cfg[$0.0] == .bool(true) }
            if let other = ["pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens"].first(where: { cfg[$0] == .bool(true) }) {
                throw ConfigError.invalidValue(file: cfgPath, field: other, reason: "this pooling is not supported (mean, cls, lasttoken and max are)")
            }
            guard on.count == 1 else { throw ConfigError.invalidValue(file: cfgPath, field: "pooling_mode_*", reason: "expected exactly one pooling mode set, got \(on.count)") }
            pooling = EmbeddingPooling(mode: on[0].1, normalize: false, origin: modules)
        }
        guard var p = pooling else { return .decoderDefault }
        p.normalize = normalize
        return p
    }

    /// One embedding from the hidden states `[tokens][hidden]` of one input.
    public func pool(_ hidden: [[Float]]) -> [Float] {
        guard let first = hidden.first else { return [] }
        var out: [Float]
        switch mode {
        case .cls: out = first
        case .last: out = hidden[hidden.count - 1]
        case .mean:
            var acc = [Double](repeating: 0, count: first.count)
            for row in hidden { for i in row.indices { acc[i] += Double(row[i]) } }
            out = acc.map { Float($0 / Double(hidden.count)) }
        case .max:
            out = first
            for row in hidden.dropFirst() { for i in row.indices { out[i] = Swift.max(out[i], row[i]) } }
        }
        if normalize {
            let n = sqrt(out.reduce(0.0) { $0 + Double($1) * Double($1) })
            if n > 0 { out = out.map { Float(Double($0) / n) } }
        }
        return out
    }
}
