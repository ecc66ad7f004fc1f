import Foundation
import Testing
@testable import Strata
@testable import StrataModels
@testable import StrataFormats

/// Each architecture's answers agree with each other: the tensors synth writes all have a
/// place, their layer matrices add up to `parametersPerLayer`, and their vectors to `vectorsPerLayer`.
@Suite struct ArchitectureTests {
    @Test(arguments: Synth.presets.map { $0.name })
    func synthTensorsHaveRolesAndAddUpToTheCounts(preset name: String) throws {
        let p = try Synth.preset(name)
        let arch = p.architecture
        let dir = NSTemporaryDirectory() + "strata-arch-\(name)-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let data = try JSONSerialization.data(withJSONObject: arch.synthConfig(p.shape))
        try data.write(to: URL(fileURLWithPath: dir + "/config.json"))
        #expect(ObjectIdentifier(try ModelRegistry.architecture(directory: dir)) == ObjectIdentifier(arch))
        let spec = try arch.spec(config: ConfigFile(path: dir + "/config.json"))
        var matrices = [Int](repeating: 0, count: spec.layers), vectors = [Int](repeating: 0, count: spec.layers)
        var roles = Set<TensorRole>()
        for (tensor, shape) in arch.synthTensors(p.shape) {
            let found = arch.place(of: tensor)
            let place = try #require(found, "\(tensor) has no place in \(arch.name)")
            roles.insert(place.role)
            guard let l = place.layer else { continue }
            #expect(l >= 0 && l < spec.layers)
            if shape.count == 2 { matrices[l] += shape[0] * shape[1] } else { vectors[l] += shape.reduce(1, *) }
        }
        #expect(matrices.allSatisfy { $0 == arch.parametersPerLayer(spec) })
        #expect(vectors.allSatisfy { $0 == arch.vectorsPerLayer(spec) })
        #expect(roles.contains(.tokenEmbedding) && roles.contains(.finalNorm))
        #expect(roles.contains(.outputHead) == !p.tied)
        let unknown = [arch.place(of: "model.layers.0.self_attn.rotary_emb.inv_freq"), arch.place(of: "nonsense")]
        #expect(unknown.allSatisfy { $0 == nil })
        // llama.cpp's names from the same table: every synthesized tensor of an architecture read
        // from GGUF has one, distinct, and it maps back to the tensor (a routed expert's: the
        // layer's stacked tensor, named once)
        if arch.ggufArchitecture != nil {
            var seen = Set<String>()
            for (name, _) in arch.synthTensors(p.shape) {
                var tensor = name
                if let place = arch.place(of: name), let e = place.expert {
                    #expect(arch.tensors.ggufName(hf: name) == nil)
                    if e > 0 { continue }
                    tensor = arch.tensors.name(place.role, layer: place.layer, expert: nil, kind: name.hasSuffix(".bias") ? "bias" : "weight")
                }
                let g = try #require(arch.tensors.ggufName(hf: tensor), "\(tensor) has no GGUF name in \(arch.name)")
                #expect(seen.insert(g).inserted, "\(g) twice")
                #expect(arch.tensorName(gguf: g) == tensor, "\(tensor) -> \(g) -> \(arch.tensorName(gguf: g) ?? "nil")")
            }
        }
    }

    /// An architecture that says nothing of GGUF metadata refuses it by name instead of reading
    /// another family's fields.
    @Test func anArchitectureWithoutGGUFReadingFailsLoudly() throws {
        let file = try GGUFFile(path: GGUFFixtures.path("llama-q8_0"))
        let h = GGUFHyperparameters(file: file, prefix: "llama")
        #expect(throws: GGUFError.self) { try Gemma3MultimodalArchitecture.ggufConfig(h) }
        #expect(try LlamaArchitecture.ggufConfig(h)["hidden_size"] as? Int == 256)
    }

    @Test func tableAnswers() {
        #expect(LlamaArchitecture.place(of: "model.layers.12.mlp.down_proj.weight") == TensorPlace(layer: 12, role: .mlpDown))
        #expect(LlamaArchitecture.place(of: "model.layers.x.mlp.down_proj.weight") == nil)
        #expect(Qwen2Architecture.place(of: "model.layers.3.self_attn.k_proj.bias") == TensorPlace(layer: 3, role: .attentionKey))
        // GPT-2 checkpoints on the hub use both prefixes
        #expect(GPT2Architecture.place(of: "h.5.attn.c_attn.weight") == TensorPlace(layer: 5, role: .attentionQKV))
        #expect(GPT2Architecture.place(of: "transformer.h.5.attn.c_attn.weight") == TensorPlace(layer: 5, role: .attentionQKV))
        #expect(GPT2Architecture.place(of: "transformer.wpe.weight") == TensorPlace(layer: nil, role: .positionEmbedding))
        // the cold embedding: only with a separate output head
        #expect(LlamaArchitecture.coldEmbedding(in: ["model.embed_tokens.weight", "lm_head.weight"]) == "model.embed_tokens.weight")
        #expect(LlamaArchitecture.coldEmbedding(in: ["model.embed_tokens.weight", "model.norm.weight"]) == nil)
        #expect(Set(ModelRegistry.supportedArchitectures).count == ModelRegistry.architectures.count)
    }
}
