import Foundation
import StrataFormats
import StrataModels
import StrataPlanner
import StrataTensor

/// Routing histograms kept beside the hardware profile (`~/.cache/strata/routing/`, or a
/// `routing/` folder beside `STRATA_PROFILE`), one per checkpoint, found by its path and used only
/// while its weight files are the ones measured (`fingerprint`).
public enum RoutingHistograms {
    public static var directory: String { ((Profiler.cachePath as NSString).deletingLastPathComponent as NSString).appendingPathComponent("routing") }

    /// The file of a checkpoint's histogram: its name and a hash of its absolute path.
    public static func path(for model: String) -> String {
        let abs = URL(fileURLWithPath: model).standardizedFileURL.path
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in abs.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        let name = ((abs as NSString).lastPathComponent).map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." ? $0 : "_" }
        return (directory as NSString).appendingPathComponent(String(name) + "-" + String(h, radix: 16) + ".json")
    }

    /// Each weight file's name, size and modification time (a GGUF file: itself; a folder: its
    /// `*.safetensors`).
    public static func fingerprint(_ folder: ModelFolder) -> String {
        let fm = FileManager.default
        var files: [String]
        if folder.gguf != nil {
            files = [folder.directory]
        } else {
            files = ((try? fm.contentsOfDirectory(atPath: folder.directory)) ?? []).filter { $0.hasSuffix(".safetensors") }.sorted()
                .map { (folder.directory as NSString).appendingPathComponent($0) }
        }
        return files.map { f -> String in
            let a = try? fm.attributesOfItem(atPath: f)
            let size = (a?[.size] as? NSNumber)?.int64Value ?? -1
            let mtime = (a?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? -1
            return "\((f as NSString).lastPathComponent):\(size):\(Int64(mtime))"
        }.joined(separator: ",")
    }

    public static func save(_ h: RoutingHistogram) throws -> String {
        let p = path(for: h.model)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        try FileIO.writeAtomically(p, try enc.encode(h))
        return p
    }

    /// The histogram measured for this checkpoint, when there is one for its present weights and
    /// its mixture's shape; `note` says why one found is not used.
    public static func load(for folder: ModelFolder, note: (String) -> Void = { _ in }) -> (RoutingHistogram, String)? {
        let p = path(for: folder.directory)
        guard let d = FileManager.default.contents(atPath: p) else { return nil }
        guard let h = try? JSONDecoder().decode(RoutingHistogram.self, from: d), h.schemaVersion == 1 else {
            note("routing histogram \(p) unreadable: not used (strata profile --routing measures it again)")
            return nil
        }
        guard h.fingerprint == fingerprint(folder) else {
            note("routing histogram \(p) was measured on other weights (\(h.fingerprint)): not used")
            return nil
        }
        if let m = folder.spec.moe, let why = h.mismatch(experts: m.experts, perToken: m.expertsPerToken, sparseLayers: m.sparseLayers) {
            note("routing histogram \(p): \(why): not used")
            return nil
        }
        return (h, p)
    }
}
