import Foundation
import Testing
@testable import Strata
@testable import StrataFormats
@testable import StrataModels
import StrataTensor

// Gemma-3's config forms read as transformers reads them. (Logits and greedy tokens against
// transformers: ModelTests and GenerationTests over the gemma3 and gemma3-mm fixtures, batched:
// PagedTests, streamed: TieringTests, GGUF: GGUFModelTests over gemma3-q8_0.)

@Suite struct Gemma3Tests {
    /// The fixture's config rewritten in the older forms gives the same logits: `rope_theta`,
    /// `rope_scaling` and `rope_local_base_freq` at the top; `rope_scaling` beside per-type
    /// `rope_parameters` (transformers updates the full-attention entry with it); the layer pattern
    /// by `sliding_window_pattern` instead of `layer_types`.
    @Test func olderConfigFormsReadAsTransformersReadsThem() throws {
        let src = Fixtures.model("gemma3")
        let seq = try Fixtures.reference("gemma3").sequences[1].map(Int32.init)
        let want = try ModelRegistry.load(directory: src).logits(seq)
        let edits: [(String, (inout [String: Any]) -> Void)] = [
            ("top-level rotary keys", { o in
                o["rope_parameters"] = nil
                o["rope_theta"] = 1_000_000.0
                o["rope_local_base_freq"] = 10_000.0
                o["rope_scaling"] = ["rope_type": "linear", "factor": 8.0]
            }),
            ("rope_scaling beside rope_parameters", { o in
                o["rope_parameters"] = ["full_attention": ["rope_type": "default", "rope_theta": 1_000_000.0],
                                        "sliding_attention": ["rope_type": "default", "rope_theta": 10_000.0]]
                o["rope_scaling"] = ["rope_type": "linear", "factor": 8.0]
            }),
            ("sliding_window_pattern", { o in o["layer_types"] = nil; o["sliding_window_pattern"] = 6 }),
        ]
        for (what, edit) in edits {
            let d = NSTemporaryDirectory() + "strata-gemma3-\(getpid())-\(UUID().uuidString)"
            try FileManager.default.copyItem(atPath: src, toPath: d)
            defer { try? FileManager.default.removeItem(atPath: d) }
            var obj = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: d + "/config.json"))) as! [String: Any]
            edit(&obj)
            try JSONSerialization.data(withJSONObject: obj).write(to: URL(fileURLWithPath: d + "/config.json"))
            let got = try ModelRegistry.load(directory: d).logits(seq)
            // equal up to the order of float sums (tests running beside this one may force another
            // kernel path for a moment); a different model differs by far more
            let diff = zip(got, want).map { zip($0, $1).map { abs($0 - $1) }.max()! }.max()!
            #expect(got.count == want.count && diff < 1e-5, "\(what): max |diff| \(diff)")
        }
        // and a different local base is not silently the same model
        let d = NSTemporaryDirectory() + "strata-gemma3-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.copyItem(atPath: src, toPath: d)
        defer { try? FileManager.default.removeItem(atPath: d) }
        var obj = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: d + "/config.json"))) as! [String: Any]
        obj["rope_parameters"] = ["full_attention": ["rope_type": "linear", "factor": 8.0, "rope_theta": 1_000_000.0],
                                  "sliding_attention": ["rope_type": "default", "rope_theta": 20_000.0]]
        try JSONSerialization.data(withJSONObject: obj).write(to: URL(fileURLWithPath: d + "/config.json"))
        let other = try ModelRegistry.load(directory: d).logits(seq)
        #expect(zip(other, want).map { zip($0, $1).map { abs($0 - $1) }.max()! }.max()! > 1e-2)
    }

    /// What llama.cpp's converter changed travels beside a GGUF's config (`WeightLayout`), never
    /// as a config.json key: a folder whose config.json names the old keys gives the same logits.
    @Test func weightLayoutKeysInAConfigJSONChangeNothing() throws {
        for (name, key) in [("gemma3", "strata_norm_weights_include_one"), ("llama-gqa", "strata_rope_interleaved"), ("gpt2", "strata_linear_out_in")] {
            let src = Fixtures.model(name)
            let seq = try Fixtures.reference(name).sequences[0].map(Int32.init)
            let want = try ModelRegistry.load(directory: src).logits(seq)
            let d = NSTemporaryDirectory() + "strata-layout-\(getpid())-\(UUID().uuidString)"
            try FileManager.default.copyItem(atPath: src, toPath: d)
            defer { try? FileManager.default.removeItem(atPath: d) }
            var obj = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: d + "/config.json"))) as! [String: Any]
            obj[key] = true
            try JSONSerialization.data(withJSONObject: obj).write(to: URL(fileURLWithPath: d + "/config.json"))
            // equal up to the order of float sums (another test may force a kernel path meanwhile);
            // a key read would change the logits by far more (the norms' 1 + w, the RoPE pairing)
            let got = try ModelRegistry.load(directory: d).logits(seq)
            #expect(zip(got, want).map { zip($0, $1).map { abs($0 - $1) }.max()! }.max()! < 1e-5, "\(name): \(key)")
        }
    }

    /// The multimodal checkpoint's text model under either prefix; the vision tower's tensors
    /// have no place (not read, not counted as layers).
    @Test func multimodalNamesAndPlaces() throws {
        typealias A = Gemma3MultimodalArchitecture
        #expect(A.place(of: "language_model.model.layers.3.self_attn.q_norm.weight") == TensorPlace(layer: 3, role: .attentionQueryNorm))
        #expect(A.place(of: "model.language_model.layers.3.mlp.down_proj.weight") == TensorPlace(layer: 3, role: .mlpDown))
        #expect(A.place(of: "language_model.lm_head.weight") == TensorPlace(layer: nil, role: .outputHead))
        #expect(A.place(of: "model.language_model.embed_tokens.weight") == TensorPlace(layer: nil, role: .tokenEmbedding))
        #expect(A.place(of: "vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight") == nil)
        #expect(A.place(of: "multi_modal_projector.mm_input_projection_weight") == nil)
        #expect(Gemma3Architecture.place(of: "model.layers.0.self_attn.k_norm.weight") == TensorPlace(layer: 0, role: .attentionKeyNorm))
        let spec = try ModelFolder(path: Fixtures.model("gemma3-mm")).spec
        #expect(spec.architecture == A.name && spec.layers == 2)
    }
}
