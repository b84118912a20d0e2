// The header: which boot this is, the image policy, what is merged now, and what the
// last boot activation did (from its report file).

import { Card, CardBody, CardTitle } from "@patternfly/react-core/dist/esm/components/Card/index.js";
import { Content } from "@patternfly/react-core/dist/esm/components/Content/index.js";
import { DescriptionList, DescriptionListDescription, DescriptionListGroup, DescriptionListTerm } from "@patternfly/react-core/dist/esm/components/DescriptionList/index.js";
import { Label, LabelGroup } from "@patternfly/react-core/dist/esm/components/Label/index.js";
import { List, ListItem } from "@patternfly/react-core/dist/esm/components/List/index.js";

import type { BootReportState } from "../api/boot-report";
import type { ManagerInfo } from "../api/service";

function bootStateText(manager: ManagerInfo): string {
  return manager.bootState === "none"
    ? "Not a Kairos boot: extensions enabled for common apply"
    : `Kairos ${manager.bootState} boot: extensions enabled for ${manager.bootState} and common apply`;
}

function policyText(policy: string): string {
  switch (policy) {
    case "permissive":
      return "permissive: any valid image";
    case "verity":
      return "verity: images with dm-verity, signed or not";
    case "strict":
      return "strict: only images signed by a trusted certificate";
    default:
      return policy || "unknown";
  }
}

function LastBoot({ report }: { report: BootReportState }) {
  switch (report.kind) {
    case "loading":
      return <>Reading…</>;
    case "absent":
      return <>No report: boot activation (kairos-extensions-boot.service) has not run since this system started.</>;
    case "unreadable":
      return <>The report cannot be read: {report.message}</>;
    case "present": {
      const { activated, skipped } = report.report;
      return (
        <Content>
          <Content component="p">
            {activated.length > 0
              ? `Activated for the ${report.report.bootState} boot: ${activated.map((a) => a.name).join(", ")}.`
              : `Nothing was activated for the ${report.report.bootState} boot.`}
          </Content>
          {skipped.length > 0 ? (
            <>
              <Content component="p">Skipped:</Content>
              <List aria-label="Skipped at boot">
                {skipped.map((s) => (
                  <ListItem key={s.name}>
                    <strong>{s.name}</strong>: {s.reason}
                  </ListItem>
                ))}
              </List>
            </>
          ) : (
            <Content component="p">Nothing was skipped.</Content>
          )}
        </Content>
      );
    }
  }
}

export function Overview({ manager, report }: { manager: ManagerInfo; report: BootReportState }) {
  return (
    <Card isPlain id="overview">
      <CardTitle component="h2">This system</CardTitle>
      <CardBody>
        <DescriptionList isHorizontal isCompact aria-label="This system">
          <DescriptionListGroup>
            <DescriptionListTerm>Boot state</DescriptionListTerm>
            <DescriptionListDescription id="boot-state">{bootStateText(manager)}</DescriptionListDescription>
          </DescriptionListGroup>
          <DescriptionListGroup>
            <DescriptionListTerm>Image policy</DescriptionListTerm>
            <DescriptionListDescription id="image-policy">{policyText(manager.imagePolicy)}</DescriptionListDescription>
          </DescriptionListGroup>
          <DescriptionListGroup>
            <DescriptionListTerm>Merged now</DescriptionListTerm>
            <DescriptionListDescription id="merged-now">
              {manager.merged.length > 0 ? (
                <LabelGroup aria-label="Merged now" numLabels={12}>
                  {manager.merged.map((name) => (
                    <Label key={name} color="green" isCompact>
                      {name}
                    </Label>
                  ))}
                </LabelGroup>
              ) : (
                "No extension is merged."
              )}
            </DescriptionListDescription>
          </DescriptionListGroup>
          <DescriptionListGroup>
            <DescriptionListTerm>Last boot activation</DescriptionListTerm>
            <DescriptionListDescription id="boot-report">
              <LastBoot report={report} />
            </DescriptionListDescription>
          </DescriptionListGroup>
        </DescriptionList>
      </CardBody>
    </Card>
  );
}
