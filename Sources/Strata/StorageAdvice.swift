import Foundation
import StrataFormats
import StrataModels
import StrataPlanner
import StrataTensor

/// What other storage types of the same model would give under the same budget, before any of
/// them exists: each type's bytes per tensor (by llama-quantize's rules for the quantized
/// schemes), planned and predicted like the model at hand. `strata plan` prints it.
public enum StorageAdvice {
    public struct Row: Sendable {
        /// f32, f16, q8_0, q4_k_m, ...
        public var storage: String
        public var weightBytes: Int
        public var streamedLayers: Int
        public var layers: Int
        public var decodeTokensPerSecond: Double
        public var aggregateTokensPerSecond: Double
        /// This is the model's own storage.
        public var current: Bool
    }

    /// The storage types compared.
    public static let options = ["f32", "f16", "q8_0", "q4_k_m"]

    /// Bytes of each layer and outside the layers if `folder` were stored as `storage`.
    static func bytes(folder: ModelFolder, storage: String) -> (layers: [Int], other: Int) {
        let arch = folder.architecture, spec = folder.spec
        var tensors: [(String, [Int])] = []
        if let c = folder.checkpoint {
            tensors = c.tensorNames.compactMap { n in c.entry(n).map { (n, $0.shape) } }
        } else {
            let shape = SynthShape(hidden: spec.hiddenSize, intermediate: spec.intermediateSize, layers: spec.layers, heads: spec.heads,
                                   kvHeads: spec.kvHeads, vocab: spec.vocabSize, maxPositions: spec.maxPositions, tied: spec.tiedEmbeddings,
                                   ropeTheta: 10000, rmsEps: 1e-5, extra: spec.headDim * spec.heads == spec.hiddenSize ? "{}" : "{\"head_dim\": \(spec.headDim)}")
            tensors = arch.synthTensors(shape).map { ($0.name, $0.shape) }
        }
        var layers = [Int](repeating: 0, count: spec.layers), other = 0
        for (name, shape) in tensors {
            let n = shape.reduce(1, *)
            let b: Int
            switch storage {
            case "f32": b = 4 * n
            case "f16", "bf16": b = 2 * n
            default:
                let scheme = QuantizeModel.Scheme(rawValue: storage) ?? .q8_0
                let t = QuantizeModel.type(gguf: arch.ggufName(hf: name) ?? name, shape: shape, scheme: scheme, layers: spec.layers)
                b = t.bytes(elements: n)
            }
            if let l = arch.place(of: name)?.layer, l < spec.layers { layers[l] += b } else { other += b }
        }
        // an untied token embedding is cold (read a row at a time), not resident
        if !spec.tiedEmbeddings, let e = tensors.first(where: { arch.place(of: $0.0)?.role == .tokenEmbedding }) {
            let n = e.1.reduce(1, *)
            other -= storage == "f32" ? 4 * n : storage == "f16" ? 2 * n
                : QuantizeModel.type(gguf: "token_embd.weight", shape: e.1, scheme: QuantizeModel.Scheme(rawValue: storage) ?? .q8_0, layers: spec.layers).bytes(elements: n)
        }
        return (layers, max(0, other))
    }

    /// The model's own storage name (f32, f16, bf16, or the GGUF's scheme by its dominant type).
    static func currentStorage(_ folder: ModelFolder, _ inv: PlannerInventory) -> String {
        switch inv.weightDType {
        case .f32?: return "f32"
        case .f16?, .bf16?: return "f16"
        case .q8_0?: return "q8_0"
        case .q4_k?, .q6_k?: return "q4_k_m"
        case .q4_0?: return "q4_0"
        case .q5_k?: return "q5_k_m"
        case .q5_0?: return "q5_0"
        case .q4_1?: return "q4_1"
        default: return ""
        }
    }

    /// Plans each storage type under `request`'s budget.
    public static func compare(folder: ModelFolder, inv: PlannerInventory, profile: HardwareProfile, request: PlanRequest) -> [Row] {
        let current = currentStorage(folder, inv)
        var rows: [Row] = []
        for s in options {
            let (layers, other) = bytes(folder: folder, storage: s)
            var alt = inv
            alt.layerBytes = layers
            alt.otherBytes = other
            alt.headBytes = other
            alt.weightDType = s == "f32" ? .f32 : s == "f16" ? .f16 : s == "q8_0" ? .q8_0 : .q4_k
            guard let p = try? Planner.plan(inv: alt, profile: profile, request: request, curve: false) else { continue }
            rows.append(Row(storage: s, weightBytes: layers.reduce(0, +) + other, streamedLayers: p.streamedLayers.count, layers: alt.layers,
                            decodeTokensPerSecond: p.prediction.decodeTokensPerSecond,
                            aggregateTokensPerSecond: p.prediction.aggregateTokensPerSecond, current: s == current))
        }
        return rows
    }

    /// One line per storage type: "q4_k_m: 636 MiB, fits in RAM, 4.1x this model's predicted speed".
    public static func text(_ rows: [Row], markdown: Bool) -> String {
        let base = rows.first { $0.current }?.aggregateTokensPerSecond
        var s = PlanReport.row(["storage", "weights", "placement", "tokens/s", "vs this model"], markdown, header: true)
        for r in rows {
            let place = r.streamedLayers == 0 ? "fits in RAM" : "\(r.streamedLayers)/\(r.layers) streamed"
            let vs = r.current ? "(this model)" : base.map { String(format: "%.2fx", r.aggregateTokensPerSecond / max(1e-12, $0)) } ?? "-"
            s += PlanReport.row([r.storage, formatBytes(r.weightBytes), place, String(format: "%.2f", r.aggregateTokensPerSecond), vs], markdown)
        }
        return s
    }
}
