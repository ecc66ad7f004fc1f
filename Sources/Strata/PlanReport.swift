import Foundation
import StrataPlanner

/// Renders a plan for people (text, markdown) and as an SVG (placement strip and budget curve).
public enum PlanReport {
    public static func text(_ p: Plan, inv: PlannerInventory, profile: HardwareProfile, markdown: Bool = false) -> String {
        let pr = p.prediction
        var s = ""
        func h(_ t: String) { s += markdown ? "\n## \(t)\n\n" : "\n\(t)\n" }
        s += markdown ? "# Strata plan: \(p.model)\n" : "Strata plan: \(p.model)\n"
        h("Model and machine")
        s += "model: \(inv.layers) layers, hidden \(inv.hidden), heads \(inv.heads)/\(inv.kvHeads) kv, vocab \(inv.vocab), weights \(formatBytes(inv.weightBytes))\n"
        s += String(format: "machine: %@, %d threads; GEMM fit alpha %.2e s + beta %.2e s/row per %.0fM params; memory %.1f GB/s (best %.1f); disk read %.0f MB/s\n",
                    profile.cpu as NSString, profile.threads, CostModel(profile: profile).alpha, CostModel(profile: profile).beta,
                    CostModel(profile: profile).referenceParams / 1e6, profile.typicalMemoryRead / 1e9, profile.memoryReadBytesPerSecond / 1e9,
                    profile.diskReadBytesPerSecond / 1e6)
        s += "budget: \(formatBytes(p.request.budgetBytes)); workload: batch \(p.batch), prompt \(p.request.promptTokens), output \(p.request.outputTokens); objective \(p.request.objective.rawValue)\n"
        h("Tiers")
        let streamedBytes = p.streamedLayers.reduce(0) { $0 + inv.layerBytes[$1] }
        let residentBytes = inv.layerBytes.reduce(0, +) - streamedBytes
        s += row(["tier", "tensors", "bytes"], markdown, header: true)
        s += row(["RAM (resident layers)", "\(inv.layers - p.streamedLayers.count) layers", formatBytes(residentBytes)], markdown)
        s += row(["RAM (embeddings, norms, head)", "non-layer", formatBytes(inv.otherBytes)], markdown)
        s += row(["disk (streamed)", "\(p.streamedLayers.count) layers", formatBytes(streamedBytes)], markdown)
        h("Layers (R resident, D streamed from disk)")
        s += (0..<inv.layers).map { p.streamedLayers.contains($0) ? "D" : "R" }.joined() + "\n"
        h("KV cache")
        let perBlock = 2 * inv.layers * p.blockSize * inv.kvHeads * inv.headDim * 4
        s += "\(p.kvBlocksRAM) blocks of \(p.blockSize) tokens in RAM (\(formatBytes(p.kvBlocksRAM * perBlock))), \(p.kvBlocksDisk) on disk: "
        s += "\(p.batch) sequences x \(p.request.promptTokens + p.request.outputTokens) tokens\n"
        h("Budget ledger")
        s += row(["line", "bytes"], markdown, header: true)
        for (k, v) in p.ledger.sorted(by: { $0.value > $1.value }) { s += row([k, formatBytes(v)], markdown) }
        s += row(["total", formatBytes(pr.peakResidentBytes)], markdown)
        h("Prediction")
        s += String(format: "time to first token %.2f s; prefill %.1f tokens/s; decode %.2f tokens/s per sequence, %.2f aggregate\n",
                    pr.timeToFirstTokenSeconds, pr.prefillTokensPerSecond, pr.decodeTokensPerSecond, pr.aggregateTokensPerSecond)
        s += String(format: "decode step %.3f s (pipeline of compute %.3f s [of which resident weight reads %.3f s] and disk reads %.3f s) -> bottleneck: %@\n",
                    pr.decodeStepSeconds, pr.computeSeconds, pr.residentReadSeconds, pr.diskReadSeconds, pr.bottleneck as NSString)
        s += "binding constraint: \(p.binding)\n"
        if !p.moreRAM.isEmpty { s += "\(p.moreRAM)\n" }
        if !p.versusRule.isEmpty { s += "vs \(p.versusRule)\n" }
        h("Budget curve (predicted tokens/s)")
        s += row(["RAM budget", "tokens/s"], markdown, header: true)
        for pt in p.budgetCurve { s += row([formatBytes(Int(pt[0])), String(format: "%.2f", pt[1])], markdown) }
        return s
    }

    static func row(_ cells: [String], _ md: Bool, header: Bool = false) -> String {
        if md {
            var r = "| " + cells.joined(separator: " | ") + " |\n"
            if header { r += "|" + cells.map { _ in "---" }.joined(separator: "|") + "|\n" }
            return r
        }
        return cells.enumerated().map { $0.offset == 0 ? $0.element.padding(toLength: 32, withPad: " ", startingAt: 0) : $0.element.padding(toLength: 16, withPad: " ", startingAt: 0) }.joined() + "\n"
    }

    /// An SVG: the per-layer placement strip on top, the budget curve below.
    public static func svg(_ p: Plan, inv: PlannerInventory) -> String {
        let w = 640.0, stripH = 40.0, plotTop = 90.0, plotH = 220.0, left = 60.0
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"360\" font-family=\"sans-serif\" font-size=\"11\">\n"
        s += "<text x=\"\(left)\" y=\"16\">\(p.model): layers resident (blue) and streamed from disk (orange)</text>\n"
        let cw = (w - left - 20) / Double(max(1, inv.layers))
        for l in 0..<inv.layers {
            let color = p.streamedLayers.contains(l) ? "#e8871e" : "#2f6fb0"
            s += String(format: "<rect x=\"%.1f\" y=\"24\" width=\"%.1f\" height=\"%.0f\" fill=\"%@\" stroke=\"white\"/>\n", left + Double(l) * cw, cw, stripH, color as NSString)
        }
        let pts = p.budgetCurve
        s += "<text x=\"\(left)\" y=\"\(Int(plotTop - 8))\">predicted tokens/s vs RAM budget</text>\n"
        s += "<rect x=\"\(left)\" y=\"\(plotTop)\" width=\"\(w - left - 20)\" height=\"\(plotH)\" fill=\"none\" stroke=\"#999\"/>\n"
        if let maxX = pts.map({ $0[0] }).max(), let minX = pts.map({ $0[0] }).min(), let maxY = pts.map({ $0[1] }).max(), maxX > minX, maxY > 0 {
            func x(_ v: Double) -> Double { left + (v - minX) / (maxX - minX) * (w - left - 20) }
            func y(_ v: Double) -> Double { plotTop + plotH - v / (maxY * 1.1) * plotH }
            s += "<polyline fill=\"none\" stroke=\"#2f6fb0\" stroke-width=\"2\" points=\"" + pts.map { String(format: "%.1f,%.1f", x($0[0]), y($0[1])) }.joined(separator: " ") + "\"/>\n"
            for pt in pts { s += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"#2f6fb0\"/>\n", x(pt[0]), y(pt[1])) }
            let bx = x(Double(p.request.budgetBytes))
            if bx >= left && bx <= w - 20 {
                s += String(format: "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"#e8871e\" stroke-dasharray=\"4\"/>\n", bx, plotTop, bx, plotTop + plotH)
            }
            s += "<text x=\"\(left)\" y=\"\(Int(plotTop + plotH + 16))\">\(formatBytes(Int(minX)))</text>\n"
            s += "<text x=\"\(Int(w - 90))\" y=\"\(Int(plotTop + plotH + 16))\">\(formatBytes(Int(maxX)))</text>\n"
            s += String(format: "<text x=\"4\" y=\"%.0f\">%.1f</text>\n", plotTop + 10, maxY * 1.1)
            s += "<text x=\"4\" y=\"\(Int(plotTop + plotH))\">0</text>\n"
        }
        s += "</svg>\n"
        return s
    }
}
