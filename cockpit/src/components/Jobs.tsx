// Jobs in progress (installs, update checks, updates), each with its phase, a progress
// bar with bytes and rate (a check counts extensions instead), and Cancel; queued ones
// say how many jobs are ahead. Ended jobs stay as alerts until dismissed, since their
// objects are gone the moment they end.

import { useState } from "react";
import { Alert, AlertActionCloseButton } from "@patternfly/react-core/dist/esm/components/Alert/index.js";
import { Button } from "@patternfly/react-core/dist/esm/components/Button/index.js";
import { Card, CardBody, CardTitle } from "@patternfly/react-core/dist/esm/components/Card/index.js";
import { DataList, DataListCell, DataListItem, DataListItemCells, DataListItemRow } from "@patternfly/react-core/dist/esm/components/DataList/index.js";
import { Flex, FlexItem } from "@patternfly/react-core/dist/esm/layouts/Flex/index.js";
import { Progress } from "@patternfly/react-core/dist/esm/components/Progress/index.js";
import { Stack } from "@patternfly/react-core/dist/esm/layouts/Stack/index.js";

import type { JobPhase, JobType } from "../api/contract";
import { describeFailure, describeJobError } from "../api/errors";
import type { ExtensionsService, FinishedJob, JobInfo } from "../api/service";
import { updateJobSummary } from "../api/updates";
import { formatRate, formatTransfer } from "../format";

function phaseText(phase: JobPhase | null): string {
  switch (phase) {
    case "resolving":
      return "Resolving the source";
    case "downloading":
      return "Downloading";
    case "verifying":
      return "Verifying the image";
    case "installing":
      return "Installing";
    case "enabling":
      return "Enabling";
    case "refreshing":
      return "Merging";
    case null:
      return "Starting";
  }
}

function what(job: { name: string; source: string }): string {
  return job.name || job.source;
}

/** The job as a noun: "install of k3s", "check for updates", "update of k3s". */
function noun(job: { type: JobType | null; name: string; source: string }): string {
  switch (job.type) {
    case "check":
      return job.source ? `check for updates of ${job.source}` : "check for updates";
    case "update":
      return `update of ${what(job) || "every extension with an update"}`;
    case "install":
    case null:
      return `install of ${what(job)}`;
  }
}

function capitalized(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function statusText(job: JobInfo): string {
  if (job.state === "queued") {
    const ahead = job.queuePosition;
    return ahead > 0 ? `Waiting for ${ahead} ${ahead === 1 ? "job" : "jobs"} ahead` : "Waiting to start";
  }
  if (job.type === "check") {
    // A check downloads nothing: its byte counts count extensions.
    const parts = ["Asking the sources"];
    if (job.bytesTotal > 0) {
      parts.push(`${job.bytesDone} of ${job.bytesTotal} ${job.bytesTotal === 1 ? "extension" : "extensions"}`);
    }
    return parts.join(" · ");
  }
  const parts = [phaseText(job.phase)];
  if (job.bytesDone > 0 || job.bytesTotal > 0) {
    parts.push(formatTransfer(job.bytesDone, job.bytesTotal));
  }
  if (job.rate !== null && job.phase === "downloading") {
    parts.push(formatRate(job.rate));
  }
  return parts.join(" · ");
}

function JobRow(props: { service: ExtensionsService; job: JobInfo; admin: boolean; onError: (m: string) => void }) {
  const { service, job, admin, onError } = props;
  const [canceling, setCanceling] = useState(false);
  const cancel = () => {
    setCanceling(true);
    service.cancel(job).catch((e: unknown) => {
      onError(describeFailure(e, "cancel"));
      setCanceling(false);
    });
  };
  const label = capitalized(noun(job));
  return (
    <DataListItem aria-labelledby={`job-${job.id}-title`} data-job={job.id}>
      <DataListItemRow>
        <DataListItemCells
          dataListCells={[
            <DataListCell key="progress">
              <Progress
                id={`job-${job.id}-title`}
                title={label}
                value={job.state === "queued" ? 0 : job.progress}
                label={statusText(job)}
                valueText={`${job.progress}%, ${statusText(job)}`}
                measureLocation="outside"
                size="sm"
                aria-label={label}
              />
            </DataListCell>,
            <DataListCell key="cancel" isFilled={false} alignRight>
              <Button
                variant="secondary"
                onClick={cancel}
                isDisabled={canceling || !admin}
                isLoading={canceling}
                aria-label={`Cancel the ${noun(job)}`}
              >
                Cancel
              </Button>
            </DataListCell>,
          ]}
        />
      </DataListItemRow>
    </DataListItem>
  );
}

/** What an ended job's alert says. */
interface Told {
  variant: "success" | "info" | "danger";
  title: string;
  text?: string;
}

function told(job: FinishedJob): Told {
  if (job.result === "canceled") {
    return { variant: "info", title: `The ${noun(job)} was canceled` };
  }
  const done = job.result === "done";
  switch (job.type) {
    case "check":
      return done
        ? { variant: "success", title: "Checked for updates", text: job.checkSummary }
        : { variant: "danger", title: "Could not check for updates", text: describeJobError(job.error, "The check") };
    case "update": {
      if (!done) {
        return { variant: "danger", title: `Could not update ${what(job)}`, text: describeJobError(job.error, "The update") };
      }
      const text = updateJobSummary(what(job), job.replaced);
      return job.replaced.length > 0
        ? { variant: "success", title: `Updated ${what(job)}`, text }
        : { variant: "info", title: `${what(job)} was not updated`, text };
    }
    case "install":
    case null:
      return done
        ? { variant: "success", title: `Installed ${what(job)}` }
        : { variant: "danger", title: `Could not install ${what(job)}`, text: describeJobError(job.error) };
  }
}

function Ended({ job, onDismiss }: { job: FinishedJob; onDismiss: () => void }) {
  const { variant, title, text } = told(job);
  return (
    <Alert isInline variant={variant} title={title} actionClose={<AlertActionCloseButton onClose={onDismiss} aria-label="Dismiss" />}>
      {text}
    </Alert>
  );
}

export function Jobs(props: {
  service: ExtensionsService;
  jobs: JobInfo[];
  finished: FinishedJob[];
  admin: boolean;
  onError: (message: string) => void;
}) {
  const { service, jobs, finished, admin, onError } = props;
  if (jobs.length === 0 && finished.length === 0) {
    return null;
  }
  return (
    <Card isPlain id="jobs">
      <CardTitle component="h2">Jobs</CardTitle>
      <CardBody>
        <Stack hasGutter>
          {jobs.length > 0 && (
            <DataList aria-label="Jobs in progress" isCompact>
              {jobs.map((job) => (
                <JobRow key={job.path} service={service} job={job} admin={admin} onError={onError} />
              ))}
            </DataList>
          )}
          <Flex direction={{ default: "column" }} spaceItems={{ default: "spaceItemsSm" }} aria-live="polite">
            {finished.map((job) => (
              <FlexItem key={job.id}>
                <Ended job={job} onDismiss={() => service.dismiss(job.id)} />
              </FlexItem>
            ))}
          </Flex>
        </Stack>
      </CardBody>
    </Card>
  );
}
