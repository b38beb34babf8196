"""The probe: one handler per event kind that connect-usage relies on.

Every handler answers in a way the check (../run.py) can verify from the sandbox's
task records: the interactive handler echoes what it got and the variables it sees,
the background handler returns `done` for a usage file it could read, the scheduled
handler returns `done` for the schedule it was given.
"""
from connect.eaas.core.decorators import event, schedulable, variables
from connect.eaas.core.extension import EventsApplicationBase
from connect.eaas.core.responses import (
    BackgroundResponse,
    CustomEventResponse,
    ScheduledExecutionResponse,
)

GREETING = 'PROBE_GREETING'
SECRET = 'PROBE_SECRET'


@variables([
    {'name': GREETING, 'initial_value': 'hello from the probe'},
    {'name': SECRET, 'initial_value': 'probe-secret-initial', 'secure': True},
])
class ProbeEventsApplication(EventsApplicationBase):

    @event('usage_file_request_processing', statuses=['ready', 'pending'])
    def process_usage_file(self, request):
        # The runner fetched the file through the REST API before calling us.
        if not request.get('id', '').startswith('UF-'):
            return BackgroundResponse.fail(output=f'not a usage file: {request!r:.200}')
        self.logger.info('usage file %s is %s', request['id'], request.get('status'))
        return BackgroundResponse.done()

    @event('product_custom_event_processing')
    def process_product_custom_event(self, request):
        return CustomEventResponse.done(
            body={
                'echo': request,
                'greeting': self.config.get(GREETING),
                'secret': self.config.get(SECRET),
            },
        )

    @schedulable('Report monthly usage', 'Probe stand-in for the monthly usage report.')
    def report_monthly_usage(self, schedule):
        if schedule.get('method') != 'report_monthly_usage':
            return ScheduledExecutionResponse.fail(output=f'unexpected schedule {schedule!r:.200}')
        self.logger.info('schedule %s fired', schedule.get('id'))
        return ScheduledExecutionResponse.done()
