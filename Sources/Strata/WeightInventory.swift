import Foundation
import StrataFormats
import StrataMemory
import StrataModels
import StrataTensor

/// Bytes of a model folder's tensors, by layer, from the safetensors headers (no weights read).
public struct WeightInventory: Sendable {
    public var locations: [TensorLocation]
    /// bytes of each transformer layer's tensors
    public var layerBytes: [Int]
    /// bytes of tensors outside the layers kept resident (final norm, LM head, a tied embedding)
    public var otherBytes: Int
    /// An untied token embedding: read one row per token through a mapping, never whole.
    public var coldNames: Set<String>
    public var coldBytes: Int
    /// bytes of one row of the cold embedding
    public var coldRowBytes: Int
    public var totalBytes: Int { otherBytes + coldBytes + layerBytes.reduce(0, +) }
    /// A mixture of experts: the bytes of each layer's routed experts (within `layerBytes`),
    /// every expert's place in the files (`[]` for a dense model), the largest one's bytes.
    public var expertLayerBytes: [Int]
    public var experts: [[ExpertLocation]]
    public var expertBytes: Int
    /// Each layer's bytes without its routed experts (what stays with the layer when the experts
    /// are read through the expert cache).
    public var denseLayerBytes: [Int] { zip(layerBytes, expertLayerBytes).map { $0 - $1 } }
    /// Each layer's bytes the tiered store keeps resident even when the layer streams (its
    /// vectors: norms, biases; `TieredWeightStore.keptResident`), within `layerBytes`.
    public var layerVectorBytes: [Int]
    /// The dtype that sizes the forward pass's conversion scratch: the first matrix that is not
    /// f32 (tensors each have their own dtype), f32 when all are.
    public var matrixScratchDType: DType {
        locations.first { $0.shape.count == 2 && $0.dtype != .f32 }?.dtype ?? .f32
    }

    public init(directory: String) throws { try self.init(folder: ModelFolder(path: directory)) }

    /// From the opened folder's headers.
    public init(folder: ModelFolder) throws {
        let arch = folder.architecture, layers = folder.spec.layers
        let ckpt = try folder.requireCheckpoint()
        var locs: [TensorLocation] = []
        var perLayer = [Int](repeating: 0, count: layers)
        var other = 0
        var expertsPerLayer = [Int](repeating: 0, count: layers)
        var vectorsPerLayer = [Int](repeating: 0, count: layers)
        for name in ckpt.tensorNames {
            guard let e = ckpt.entry(name), let dtype = e.dtype, let path = ckpt.path(of: name) else { continue }
            let place = arch.place(of: name)
            let l = place?.layer ?? -1
            let layer = l < layers ? l : -1
            // an expert's matrices (its biases, gpt-oss's, stay with the layer; so do gpt-oss's hub-layout
            // experts, read with their layer)
            let bias = name.hasSuffix(".bias") || name.hasSuffix("_bias")
            let part = bias ? nil : [TensorRole.expertGate: 0, .expertUp: 1, .expertDown: 2][place?.role ?? .tokenEmbedding]
            locs.append(TensorLocation(name: name, path: path, begin: e.begin, end: e.end, dtype: dtype, shape: e.shape, layer: layer,
                                       expert: part.map { ($0, place?.expert) }))
            locs[locs.count - 1].expertBias = bias && [TensorRole.expertGate, .expertUp, .expertDown, .expertGateUp, .expertDownInOut].contains(place?.role ?? .tokenEmbedding)
            if layer >= 0 { perLayer[layer] += e.byteCount } else { other += e.byteCount }
            if layer >= 0 && part != nil { expertsPerLayer[layer] += e.byteCount }
            if layer >= 0 && TieredWeightStore.keptResident(locs.last!) { vectorsPerLayer[layer] += e.byteCount }
        }
        locations = locs
        layerBytes = perLayer
        expertLayerBytes = expertsPerLayer
        layerVectorBytes = vectorsPerLayer
        if folder.spec.moe != nil {
            experts = try TensorLocation.experts(locs, layers: layers, location: folder.directory)
            if experts.allSatisfy(\.isEmpty) { experts = [] }  // no expert one by one: placed as a dense model
        } else {
            experts = []
        }
        expertBytes = experts.flatMap { $0 }.map(\.bytes).max() ?? 0
        // the token embedding is cold when the LM head is a separate tensor (not tied to it)
        let coldName = arch.coldEmbedding(in: ckpt.tensorNames)
        let cold = locs.filter { $0.name == coldName }
        coldNames = Set(cold.map { $0.name })
        coldBytes = cold.reduce(0) { $0 + $1.end - $1.begin }
        coldRowBytes = cold.first.map { ($0.end - $0.begin) / max(1, $0.shape.first ?? 1) } ?? 0
        otherBytes = other - coldBytes
    }
}
