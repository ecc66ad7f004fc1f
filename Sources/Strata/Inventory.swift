import Foundation
import StrataFormats
import StrataModels

/// What a model folder holds, from headers only: tensors by role, bytes, and the spec.
public struct CheckpointSummary: Codable, Sendable {
    /// snake_case in JSON, as every JSON output of Strata
    enum CodingKeys: String, CodingKey { case spec, dtypes, roles, totalBytes = "total_bytes", parameters }

    public struct Role: Codable, Sendable { public var role: String; public var tensors: Int; public var bytes: Int }
    public var spec: ModelSpec
    public var dtypes: [String: Int]
    public var roles: [Role]
    public var totalBytes: Int
    public var parameters: Int

    public init(directory: String) throws { try self.init(folder: ModelFolder(path: directory)) }

    public init(folder: ModelFolder) throws {
        let arch = folder.architecture
        let ckpt = try folder.requireCheckpoint()
        spec = folder.spec
        var dtypes: [String: Int] = [:]
        var byRole: [String: (Int, Int)] = [:]
        var total = 0, params = 0
        for name in ckpt.tensorNames {
            guard let e = ckpt.entry(name) else { continue }
            dtypes[e.rawDType, default: 0] += e.byteCount
            let r = arch.place(of: name)?.role.group ?? "other"
            byRole[r, default: (0, 0)].0 += 1
            byRole[r, default: (0, 0)].1 += e.byteCount
            total += e.byteCount
            params += e.shape.reduce(1, *)
        }
        self.dtypes = dtypes
        roles = byRole.sorted { $0.value.1 > $1.value.1 }.map { Role(role: $0.key, tensors: $0.value.0, bytes: $0.value.1) }
        totalBytes = total
        parameters = params
    }

    public var text: String {
        var s = "model: \(spec.architecture), \(spec.layers) layers, hidden \(spec.hiddenSize), ffn \(spec.intermediateSize), "
        s += "heads \(spec.heads)/\(spec.kvHeads) kv, head dim \(spec.headDim), vocab \(spec.vocabSize)\n"
        s += "parameters: \(String(format: "%.1f", Double(parameters) / 1e6)) M, weights \(formatBytes(totalBytes)) ("
        s += dtypes.sorted { $0.key < $1.key }.map { "\($0.key) \(formatBytes($0.value))" }.joined(separator: ", ") + ")\n"
        s += "KV cache per token: " + DType.kvTypes.map { "\($0.rawValue) \(formatBytes(spec.kvBytesPerToken($0)))" }.joined(separator: ", ") + "\n"
        for r in roles {
            s += "  " + r.role.padding(toLength: 10, withPad: " ", startingAt: 0) + String(format: " %5d tensors  ", r.tensors) + formatBytes(r.bytes) + "\n"
        }
        return s
    }
}
